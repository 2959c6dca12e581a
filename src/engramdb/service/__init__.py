"""engramdb.service"""
