"""hubgate.hub_service"""
