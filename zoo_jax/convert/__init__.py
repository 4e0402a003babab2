"""Interoperability: import published model zoos into the zoo_jax store; export models to PyTorch.

    convert("modelzoos", SRC, WORKDIR)   # Model Zoos (Schürholt et al., 2022): Ray Tune trial folders
    convert("cnn_zoo", SRC, WORKDIR)     # Small CNN Zoo (Unterthiner et al., 2020): weights.npy + tables

or `python -m zoo_jax.convert --from=modelzoos --src=SRC --workdir=WORKDIR`. The accepted
layouts are documented, exactly, in `formats/modelzoos.py` and `formats/cnn_zoo.py`; the result is read with
`zoo_jax.zoo.Zoo(WORKDIR)`. A conversion that fails or is killed keeps its committed epochs;
running it again continues from there.

One model's weights go to and from the published PyTorch modules with `to_torch_state_dict`,
`from_torch_state_dict` and `torch_model` (torch is optional, imported only by those).
"""

from zoo_jax import zoo
from zoo_jax import registry
from zoo_jax.convert import writer
from zoo_jax.convert.torch_export import from_torch_state_dict, to_torch_state_dict, torch_model

# Import formats: the modules of convert/formats/, each exposing `scan(src) -> writer.Source`
# (the models, their hyperparameters and a reader of each (model, epoch)'s weights). A new
# format is one new file there; `--from` names it.
FORMATS_PACKAGE = "zoo_jax.convert.formats"
SOURCE_FORMATS = registry.names(FORMATS_PACKAGE)


def convert(source_format: str, src: str, workdir: str, *, progress_bar: bool = False) -> zoo.Zoo:
  """Converts the published zoo in `src` (a `SOURCE_FORMATS` layout) into a zoo_jax zoo in `workdir`.

  Resumes an earlier, unfinished conversion into the same workdir; refuses a workdir that holds
  another zoo. Returns the converted zoo.
  """
  with zoo.writing(workdir):  # the lock first, before the source is scanned
    source = registry.load(FORMATS_PACKAGE, source_format, "source format").scan(src)
    return writer.write(source, source_format, src, workdir, progress_bar=progress_bar)


__all__ = [
  "SOURCE_FORMATS",
  "convert",
  "from_torch_state_dict",
  "to_torch_state_dict",
  "torch_model",
]
