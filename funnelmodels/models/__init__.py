"""Models: stage-conversion and satisfaction engines with one shape (fit, predict, explain, save, load).

Training (train), scoring the present (predict) and the pipeline backtest sit beside them.
"""
