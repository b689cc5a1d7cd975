"""The pipeline definition (:mod:`pipelines.retrain_pipeline`) and its compiled YAML."""

from pathlib import Path

# The compiled spec users upload to the KFP UI and `retrain run` executes locally.
COMPILED_PIPELINE = Path(__file__).with_name("retrain_pipeline.yaml")
# The pipeline's name: it names the compiled spec, and kfp.local names each local run's artifact
# folder after it (`retrain-pipeline-<time>`).
PIPELINE_NAME = "retrain-pipeline"
