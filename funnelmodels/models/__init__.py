"""Models: stage conversion (LightGBM and logit) with a shared fit/predict/evaluate/explain/save/load shape."""
