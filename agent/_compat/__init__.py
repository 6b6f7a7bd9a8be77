"""Library internals the agent relies on, one module per library, each with a contract test
(``tests/agent/test_compat.py``) that fails loudly, by name, when an upgrade changes them."""
