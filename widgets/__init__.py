"""hubgate.widgets"""
