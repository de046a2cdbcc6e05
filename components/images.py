"""Container images the components run in on a cluster (ignored by kfp.local).

Built from `dockerfiles/Dockerfile` (CPU: data, features, evaluation, serving) and
`dockerfiles/Dockerfile.train` (CUDA base image: training). Override at compile time with the
HM3_IMAGE / HM3_TRAIN_IMAGE environment variables: `hm3 compile` (and `hm3 submit` when it
compiles) reads them through `pipelines.compile.images_from_env`, and `compile_pipeline`
rewrites the compiled executors built on these defaults; unset, the defaults stay.
"""

HM3_IMAGE = "ghcr.io/hm3/hm3:0.1.0"
HM3_TRAIN_IMAGE = "ghcr.io/hm3/hm3-train:0.1.0"
