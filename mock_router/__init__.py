"""mock_router: a mock NOMYO router (server side of protocol v1.0) for offline development."""
