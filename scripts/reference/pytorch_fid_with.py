"""`python -m pytorch_fid` on an Inception weights file of one's own instead of its download,
to check `diffuse fid` / `diffuse fid --save-stats` against pytorch-fid on any folders:

    python3 scripts/reference/pytorch_fid_with.py WEIGHTS.pth [pytorch-fid's arguments]
    python3 scripts/reference/pytorch_fid_with.py WEIGHTS.pth --is FOLDER [--splits 10]

`--is` prints the Inception Score of a folder as the original code computes it (contiguous
splits, the fc layer's logits without the bias), from pytorch-fid's network and image loading.
WEIGHTS.pth: `scripts/reference/inception.py --pth FILE --seed S` writes one from a formula.
"""

import sys

import numpy as np
import torch
import pytorch_fid.inception as pfi

weights = torch.load(sys.argv[1], map_location="cpu")
pfi.load_state_dict_from_url = lambda *a, **k: weights
args = sys.argv[2:]

if args and args[0] == "--is":
    import pathlib
    from pytorch_fid.fid_score import ImagePathDataset, IMAGE_EXTENSIONS
    import torchvision.transforms as TF
    folder = pathlib.Path(args[1])
    splits = int(args[args.index("--splits") + 1]) if "--splits" in args else 10
    files = sorted(f for ext in IMAGE_EXTENSIONS for f in folder.glob(f"*.{ext}"))
    loader = torch.utils.data.DataLoader(ImagePathDataset(files, transforms=TF.ToTensor()), batch_size=50)
    model = pfi.InceptionV3([3]).eval()
    fc = pfi.fid_inception_v3().fc.weight.detach()
    logits = []
    with torch.no_grad():
        for x in loader:
            logits.append(model(x)[0][:, :, 0, 0] @ fc.T)
    p = torch.cat(logits).double().softmax(1).numpy()
    scores = []
    for i in range(splits):
        part = p[i * len(p) // splits:(i + 1) * len(p) // splits]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    print(f"IS: {np.mean(scores)} ± {np.std(scores)}")
else:
    from pytorch_fid import fid_score
    sys.argv = ["pytorch_fid"] + args
    fid_score.main()
