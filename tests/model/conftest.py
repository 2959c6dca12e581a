"""The data-model suite runs on every backend of the contract suite, the HTTP client included
(the fixtures ``backend`` and ``db`` come from tests/conftest.py)."""
