"""DataGate: stops the run before Transform when data validation found anomalies.

  component.py  the component, its spec and its DataValidationResult artifact
  executor.py   reads the validators' anomalies, stops the run or records that it went on
  findings.py   the anomalies in words (feature, expected, found, counts) and the drift and skew
                figures; DataValidationError (exit code 1). The run report reads them too.
"""
