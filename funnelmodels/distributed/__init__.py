"""The pipeline over a dataset partitioned by customer, on a Dask cluster (the optional ``dask`` extra).

``partition`` writes the partitions (:mod:`.partition`, no Dask needed); :mod:`.cluster` starts or joins
a cluster; :mod:`.pipeline` runs the single-machine functions partition by partition and combines their
results exactly; :mod:`.training` fits the models on one node from a sample drawn across partitions, or
with ``lightgbm.dask`` on every row.
"""
