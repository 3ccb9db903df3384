"""Call transformers and peft through their current APIs, so decoding and training raise no
deprecation warnings, on transformers 5.23 and 5.24 alike.

- **The KV cache's name.** transformers 5.24 renamed the causal LMs' ``past_key_values`` (forward
  argument and output field) to ``cache``. The old name still works until 5.40, but every forward
  that passes it raises a FutureWarning (one per step of the constrained decoder) and every read of
  ``output.past_key_values`` logs one; 5.23 knows only ``past_key_values``. The decoders hand the
  cache over through ``cache_kwargs`` / ``output_cache``, which ask the model itself which name it
  declares (a model that still says ``past_key_values`` keeps getting it, rather than a ``cache`` it
  would silently ignore).
- **peft's checkpointing probe.** ``PeftModel.__init__`` (peft 0.21) reads the model's
  ``is_gradient_checkpointing``, which transformers 5.23+ deprecates for
  ``is_activation_checkpointing``: a FutureWarning raised inside peft, not by a call of ours, each
  time an adapter is attached. ``quiet_peft_checkpointing_probe`` ignores exactly that message
  around our peft calls; our own code calls ``activation_checkpointing_enable``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from contextlib import contextmanager

NEW_NAME = "cache"
OLD_NAME = "past_key_values"
PEFT_PROBE_MESSAGE = r"`is_gradient_checkpointing` is deprecated"


def transformers_model(model):
    """The transformers model under peft (``get_base_model``) and DDP / accelerate (``.module``)
    wrappers: the class whose ``forward`` signature names the cache argument."""
    for _ in range(8):  # wrappers nest a few levels at most
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module") and not hasattr(model, "config"):
            model = model.module
        else:
            break
    return model


@functools.cache
def _declares_new_name(cls: type) -> bool:
    """Whether ``cls.forward`` takes ``cache`` (``inspect.signature`` sees through transformers'
    ``functools.wraps`` decorators to the real parameters)."""
    return NEW_NAME in inspect.signature(cls.forward).parameters


def cache_argument(model) -> str:
    """The keyword ``model``'s forward takes its KV cache under: ``"cache"`` (transformers >= 5.24)
    or ``"past_key_values"``."""
    return NEW_NAME if _declares_new_name(type(transformers_model(model))) else OLD_NAME


def cache_kwargs(model, cache) -> dict:
    """``{name: cache}`` to splat into ``model(...)``: ``model(ids, **cache_kwargs(model, c))``."""
    return {cache_argument(model): cache}


def output_cache(output):
    """The KV cache a forward returned, read under the field its output class declares (reading
    ``past_key_values`` where the field is ``cache`` logs a deprecation)."""
    names = {f.name for f in dataclasses.fields(output)} if dataclasses.is_dataclass(output) else set(output.keys())
    return getattr(output, NEW_NAME if NEW_NAME in names else OLD_NAME)


@contextmanager
def quiet_peft_checkpointing_probe():
    """Around ``get_peft_model`` / ``PeftModel.from_pretrained``: ignore the one FutureWarning peft
    triggers by reading the deprecated ``is_gradient_checkpointing`` (see the module docstring);
    every other warning passes as before."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_PROBE_MESSAGE, category=FutureWarning)
        yield
