"""engramdb.cli"""
