"""Forecasting as a product: the Forecaster API and its one forecasting loop (forecaster), input checks
(inputs), which model a name means (resolve), the calibrated band (band, calibrate) and the HTTP
service (serve: ``python -m timer1.forecast.serve``)."""
