"""Layer 6, results: predictions with TTA, Kaggle submissions, the lesson's views of a run,
and runs listed and compared side by side."""
