"""engramdb.migrations"""
