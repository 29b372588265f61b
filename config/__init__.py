"""hubgate.config"""
