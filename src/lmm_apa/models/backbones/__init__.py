"""Backbone registry: ``load_backbone(source, arch=None, ...)`` picks the module by ``arch`` or by the
model's config (``model_type``). Implemented in ``registry``-style functions below."""
