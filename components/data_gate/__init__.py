"""A gate after ExampleValidator: stops the run when the data has anomalies."""

from components.data_gate.component import DataGate, DataGateFailed, DataGateReport, read_anomalies

__all__ = ["DataGate", "DataGateFailed", "DataGateReport", "read_anomalies"]
