"""``fedleak data``: fetch the public datasets (needs internet) and describe any dataset."""
from __future__ import annotations

from fedleak.data import DATASETS, load_dataset
from fedleak.data.download import download


def run_download(args) -> int:
    path = download(args.name, args.root)
    print(f"{args.name} downloaded and verified in {path}")
    return 0


def run_info(args) -> int:
    dataset = load_dataset(args.name, root=args.root, split=args.split)
    info = dataset.info
    print(f"{info.name} ({args.split}): {len(dataset)} samples of shape {info.input_shape}, "
          f"{info.num_classes} classes, kind {info.kind}")
    if info.mean:
        print(f"  mean {info.mean}  std {info.std}")
    if info.kind == "image" and "size" in DATASETS.options(args.name):
        from fedleak.audit.config import AuditConfig

        height, width = AuditConfig.size
        print(f"  fedleak audit resizes it to {height}x{width} by default (--size): the model reads "
              f"({info.input_shape[0]}, {height}, {width}) float32 in [0, 1], channels first, unnormalised")
    elif info.kind == "text":
        print("  the model reads int64 token ids, shape (batch, length)")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="download or describe datasets")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("download", help="fetch MNIST, Fashion-MNIST, CIFAR-10/100 with checksum checks")
    fetch.add_argument("name", help="mnist, fashion_mnist, cifar10 or cifar100")
    fetch.add_argument("--root", required=True, help="folder to put the files in")
    fetch.set_defaults(func=run_download)
    info = actions.add_parser("info", help="shape, classes and normalisation of a dataset")
    info.add_argument("name", help=f"one of: {', '.join(DATASETS.names())}" if DATASETS.names() else "dataset")
    info.add_argument("--root", default=None)
    info.add_argument("--split", default="train", choices=["train", "test"])
    info.set_defaults(func=run_info)
