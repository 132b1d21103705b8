"""`python -m dataloaders.synthetic --root data/demo`: write the synthetic demo clips and captions."""
from dataloaders.synthetic.clips import main

main()
