"""hubgate.spawners"""
