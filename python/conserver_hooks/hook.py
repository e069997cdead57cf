"""vCon Server hook module (replace conserver/hook.py with this file): feeds vcon-otel."""
from vcon_otel.hooks import after_processing, before_processing  # noqa: F401
