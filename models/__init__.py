"""Models and their losses, one sub-package per system: clip/ (the CLIP backbone and weight loading),
text_video/ (WTI, meanP, HBI and the Banzhaf estimator), vqa/ (HBI with answer heads). Imports nothing from
modules/ or dataloaders/."""
