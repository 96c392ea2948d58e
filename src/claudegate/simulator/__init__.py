"""The Anthropic API simulator: ``claudegate simulate``, the embedded upstream, and the test double."""

from claudegate.simulator.app import create_app
from claudegate.simulator.settings import FaultRate, LatencyModel, SimulatorSettings

__all__ = ["FaultRate", "LatencyModel", "SimulatorSettings", "create_app"]
