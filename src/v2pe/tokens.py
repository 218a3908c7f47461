"""The special strings and ids of InternVL inputs, defined once.

* `IMAGE_PLACEHOLDER`: what a conversation writes where an image goes (`<image>`);
* `IMG_START`, `IMG_END`, `IMG_CONTEXT`: what the processor expands each placeholder into,
  `<img>` + `<IMG_CONTEXT>` x (tokens per tile x tiles) + `</img>`; V2PE finds images by the
  `<img>` / `</img>` pair;
* `IGNORE_INDEX`: the label of a token that is not trained on (-100, PyTorch's cross-entropy default).
"""

IMAGE_PLACEHOLDER = "<image>"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
IGNORE_INDEX = -100
