"""Alerts to operators: webhooks told when errors pile up, budgets fill, breakers open, upstreams throttle."""

from claudegate.alerts.notifier import Alert, Alerts, AlertSettings
from claudegate.alerts.watch import ErrorRateWatch

__all__ = ["Alert", "AlertSettings", "Alerts", "ErrorRateWatch"]
