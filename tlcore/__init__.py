"""tlcore: the study library (data, models, training, metrics, similarity). Knows nothing of MLflow."""
