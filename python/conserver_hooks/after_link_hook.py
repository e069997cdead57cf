"""vCon Server after_link hook module (replace conserver/after_link_hook.py with this file)."""
from vcon_otel.hooks import after_link  # noqa: F401
