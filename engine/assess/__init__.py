"""Stage 2, assess: how much a photo would gain from enhancement and why. The assessor and its
scores (``scoring``, its input ``views``, fine-tuned heads ``finetune``), the perceived-quality
model Q (``quality``), the degradation model that defines the severities (``degrade``) and
full-reference metrics (``metrics``)."""
