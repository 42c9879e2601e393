"""Reproduction of Boenisch et al. (paper 002) Tables 2, 5, 6 and 9 and Figures 9-10: passive extraction per
weight initialiser, trap weights per scaling factor s, per (neurons N, batch size B) and per number of averaged
batches, on a grey-scale dataset with the FC-NN and a colour dataset with the VGG-style CNN (Table 7).

Every cell is one run: a fresh model (seeded), a random batch of the training split, the client's FedSGD
gradient of the extraction layer (the weight and bias entries of ``batch_gradients``, computed alone since the
attack reads nothing else), Eq. 5 at that layer, then A, P and R against the batch (§8.1,
:mod:`fedleak.metrics.extraction`). Deviations from the paper: the CNN is narrower (``cnn_channels``; the
extraction only needs the forwarded input, and 512 x 32 x 32 x 1000 weights do not fit a laptop), Fashion-MNIST and
scikit-image photo tiles stand in for MNIST and CIFAR-10 when those folders are absent, and Table 9's average of
``num`` batch gradients is computed as the mean gradient over their union (the same number without BatchNorm).
Tables 6 and 9 and the figures use, per architecture, the s with the best recall in our Table 5.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fedleak.attacks.analytic import LayerSecret, extract_at_layer, identity_map
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, trap_weights
from fedleak.data import DataFormatError, load_dataset
from fedleak.fl.training import task_loss
from fedleak.metrics.extraction import extraction_scores
from fedleak.models import build_model
from fedleak.report import ResultsDir
from fedleak.report.plots import image_grid

# Paper 002, Table 2: passive attack, (P, R) per initialiser, B = 100, N = 1000, per dataset.
PAPER_TABLE2 = {
    "xavier_normal": {"MNIST": (.004, .037), "CIFAR10": (.048, .203), "ImageNet": (.046, .213)},
    "xavier_uniform": {"MNIST": (.005, .048), "CIFAR10": (.053, .229), "ImageNet": (.040, .201)},
    "gaussian_0.01": {"MNIST": (.005, .048), "CIFAR10": (.051, .226), "ImageNet": (.041, .203)},
    "gaussian_0.1": {"MNIST": (.005, .049), "CIFAR10": (.053, .238), "ImageNet": (.043, .209)},
    "gaussian_0.5": {"MNIST": (.006, .050), "CIFAR10": (.058, .255), "ImageNet": (.044, .218)},
    "gaussian_1": {"MNIST": (.006, .059), "CIFAR10": (.058, .256), "ImageNet": (.045, .218)},
    "gaussian_2": {"MNIST": (.007, .061), "CIFAR10": (.058, .259), "ImageNet": (.047, .217)},
}
# Paper 002, Table 5: trap weights, (A, P, R) per scaling factor s, B = 100, N = 1000.
PAPER_TABLE5 = {
    .400: {"MNIST": (.022, .803, .114), "CIFAR10": (0., 0., 0.), "ImageNet": (0., 0., 0.)},
    .500: {"MNIST": (.149, .636, .354), "CIFAR10": (0., 0., 0.), "ImageNet": (0., 0., 0.)},
    .600: {"MNIST": (.462, .408, .526), "CIFAR10": (0., 0., 0.), "ImageNet": (0., 0., 0.)},
    .700: {"MNIST": (.796, .203, .540), "CIFAR10": (0., 0., 0.), "ImageNet": (0., 0., 0.)},
    .800: {"MNIST": (.959, .062, .334), "CIFAR10": (0., 0., 0.), "ImageNet": (0., 0., 0.)},
    .900: {"MNIST": (.996, .010, .089), "CIFAR10": (.034, .946, .077), "ImageNet": (0., 0., 0.)},
    .950: {"MNIST": (.999, .003, .029), "CIFAR10": (.729, .412, .540), "ImageNet": (0., 0., 0.)},
    .960: {"MNIST": (.999, .003, .027), "CIFAR10": (.925, .175, .522), "ImageNet": (0., 0., 0.)},
    .970: {"MNIST": (1., .002, .020), "CIFAR10": (.993, .025, .198), "ImageNet": (.002, .900, .013)},
    .980: {"MNIST": (1., .002, .021), "CIFAR10": (1., .001, .008), "ImageNet": (.043, .986, .049)},
    .990: {"MNIST": (1., .002, .020), "CIFAR10": (1., 0., 0.), "ImageNet": (.655, .514, .457)},
    .995: {"MNIST": (1., .002, .018), "CIFAR10": (1., 0., 0.), "ImageNet": (.999, .007, .055)},
    .999: {"MNIST": (1., .002, .017), "CIFAR10": (1., 0., 0.), "ImageNet": (1., 0., 0.)},
}
# Paper 002, Table 6: trap weights, (A, P, R) per (neurons N, batch size B); the paper's caption says (B, N)
# but its rows list N first (e.g. (3000, 20) is 3000 neurons and 20 inputs, R = 1).
PAPER_TABLE6 = {
    (200, 20): {"MNIST": (.522, .436, .720), "CIFAR10": (.454, .670, .695), "ImageNet": (.090, .948, .355)},
    (200, 50): {"MNIST": (.690, .302, .428), "CIFAR10": (.662, .494, .452), "ImageNet": (.381, .763, .304)},
    (200, 100): {"MNIST": (.782, .196, .218), "CIFAR10": (.846, .280, .269), "ImageNet": (.653, .500, .240)},
    (200, 200): {"MNIST": (.859, .121, .086), "CIFAR10": (.954, .124, .096), "ImageNet": (.886, .233, .113)},
    (500, 20): {"MNIST": (.535, .451, .915), "CIFAR10": (.452, .689, .870), "ImageNet": (.096, .939, .490)},
    (500, 50): {"MNIST": (.697, .301, .624), "CIFAR10": (.653, .505, .614), "ImageNet": (.387, .767, .426)},
    (500, 100): {"MNIST": (.792, .205, .397), "CIFAR10": (.845, .290, .422), "ImageNet": (.646, .508, .358)},
    (500, 200): {"MNIST": (.871, .129, .185), "CIFAR10": (.950, .119, .177), "ImageNet": (.892, .240, .199)},
    (1000, 20): {"MNIST": (.539, .444, .950), "CIFAR10": (.441, .703, .915), "ImageNet": (.102, .942, .595)},
    (1000, 50): {"MNIST": (.705, .300, .760), "CIFAR10": (.648, .504, .724), "ImageNet": (.388, .770, .516)},
    (1000, 100): {"MNIST": (.796, .203, .540), "CIFAR10": (.844, .297, .556), "ImageNet": (.655, .514, .457)},
    (1000, 200): {"MNIST": (.871, .124, .293), "CIFAR10": (.951, .120, .256), "ImageNet": (.892, .238, .288)},
    (3000, 20): {"MNIST": (.541, .442, 1.), "CIFAR10": (.441, .696, .945), "ImageNet": (.101, .934, .640)},
    (3000, 50): {"MNIST": (.704, .299, .888), "CIFAR10": (.646, .503, .812), "ImageNet": (.386, .764, .586)},
    (3000, 100): {"MNIST": (.797, .203, .746), "CIFAR10": (.840, .286, .711), "ImageNet": (.649, .518, .579)},
    (3000, 200): {"MNIST": (.873, .129, .504), "CIFAR10": (.951, .122, .414), "ImageNet": (.889, .243, .404)},
}
# Paper 002, Table 9: trap weights on MNIST, (A, P, R) per (batch size B, number of averaged batches).
PAPER_TABLE9 = {
    (20, 1): (.544, .459, .995), (20, 5): (.471, .540, .190), (20, 10): (.461, .508, .100),
    (20, 20): (.484, .468, .047), (50, 1): (.706, .317, .750), (50, 5): (.630, .327, .169),
    (50, 10): (.716, .311, .082), (50, 20): (.655, .332, .040), (100, 1): (.798, .214, .542),
    (100, 5): (.822, .197, .107), (100, 10): (.783, .230, .060), (100, 20): (.759, .248, .026),
}
PAPER_COLUMN = {"mnist": "MNIST", "fashion_mnist": "MNIST", "emnist": "MNIST", "bundled": "MNIST", "digits": "MNIST",
                "cifar10": "CIFAR10", "cifar100": "CIFAR10", "skimage_photos": "CIFAR10", "imagefolder": "ImageNet"}
INITIALISERS = tuple(PAPER_TABLE2)
SCALE_FACTORS = tuple(PAPER_TABLE5)
NEURONS_BATCHES = tuple(PAPER_TABLE6)
AVERAGED = tuple(PAPER_TABLE9)


@dataclass
class TrapReproductionConfig:
    """What ``fedleak reproduce trap-weights`` runs; ``runs`` per cell (the paper averages 10)."""

    dataset: str = "fashion_mnist"
    root: str | None = None
    colour_dataset: str = "skimage_photos"
    colour_root: str | None = None
    colour_size: int = 32
    runs: int = 10
    batch_size: int = 100
    neurons: int = 1000
    fcnn_widths: tuple[int, ...] = (3000, 3000, 2000, 1000)  # after the first layer of ``neurons`` (Table 7)
    cnn_channels: tuple[int, ...] = (16, 32, 32)  # Table 7 has (128, 256, 512)
    tables: tuple[str, ...] = ("2", "5", "6", "9")
    seed: int = 0
    device: str = "cpu"


def load_images(name: str, root: str | None, size: int | None) -> tuple[object, str]:
    """The training split of ``name``. Only the default, Fashion-MNIST from the Debian package, falls back to the
    bundled sample when it is not installed; a data set the user names with a root must be there."""
    options = {"size": size} if size is not None else {}
    if name == "skimage_photos":
        options["grid"] = 6  # 288 tiles: enough for batches of 200
    try:
        return load_dataset(name, root=root, **options), name
    except DataFormatError as error:
        if name != "fashion_mnist" or root is not None:
            raise
        print(f"{name} not found ({error}); using the bundled Fashion-MNIST sample")
        return load_dataset("bundled"), "bundled"


def layer_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layer: str) -> dict[str, torch.Tensor]:
    """The FedSGD gradient entries of ``layer`` (mean over the batch), as ``batch_gradients`` would give them."""
    linear = model.get_submodule(layer)
    loss = task_loss(model, model(x), y)
    weight, bias = torch.autograd.grad(loss, [linear.weight, linear.bias])
    return {f"{layer}.weight": weight, f"{layer}.bias": bias}


def _build(arch: str, info, neurons: int, config: TrapReproductionConfig) -> nn.Module:
    if arch == "fcnn":
        return build_model("fcnn", info.input_shape, info.num_classes, widths=(neurons, *config.fcnn_widths))
    return build_model("vgg_cnn", info.input_shape, info.num_classes, channels=config.cnn_channels, hidden=neurons)


def _initialise(linear: nn.Linear, name: str) -> None:
    with torch.no_grad():
        if name == "xavier_normal":
            nn.init.xavier_normal_(linear.weight)
        elif name == "xavier_uniform":
            nn.init.xavier_uniform_(linear.weight)
        else:
            nn.init.normal_(linear.weight, std=float(name.split("_")[1]))
        linear.bias.zero_()


def measure(data, arch: str, *, run: int, batch: int, neurons: int, config: TrapReproductionConfig,
            scale_factor: float | None = None, initialiser: str | None = None, keep: bool = False) -> dict:
    """One cell: A, P, R of the passive attack (``initialiser``) or of trap weights (``scale_factor``)."""
    seed = config.seed * 100_003 + run
    torch.manual_seed(seed)
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:batch]
    if len(index) < batch:
        raise ValueError(f"{data.info.name} has {len(data)} images, fewer than a batch of {batch}")
    x, y = (t.to(config.device) for t in data[index])
    model = _build(arch, data.info, neurons, config).to(config.device)
    if scale_factor is None:
        secret = LayerSecret("fc1.linear", identity_map(data.info.input_shape, device=config.device))
        _initialise(model.get_submodule(secret.layer), initialiser)
    else:
        trap = TrapWeightsConfig(data.info.input_shape, scale_factor=scale_factor, seed=seed)
        model, secret = trap_weights(model, trap)
    update = layer_update(model, x, y, secret.layer)
    reconstruction = extract_at_layer(update, secret, device=config.device)
    scores = extraction_scores(reconstruction.inputs, update[f"{secret.layer}.bias"], x, device=config.device)
    cell = scores.as_dict()
    if keep:
        extracted = reconstruction.inputs[scores.best] if len(reconstruction.inputs) else torch.zeros_like(x)
        cell["images"] = (x, extracted, scores.recovered)
    return cell


def _mean(cells: list[dict]) -> dict[str, float]:
    return {k: sum(c[k] for c in cells) / len(cells) for k in ("A", "P", "R")}


def _fmt(values, keys=("A", "P", "R")) -> str:
    if values is None:
        return "  ".join(" -  " for _ in keys)
    if isinstance(values, dict):
        values = [values[k] for k in keys]
    return "  ".join(f"{v:.3f}" for v in values)


def extraction_figure(originals: torch.Tensor, extracted: torch.Tensor, recovered: torch.Tensor, path: Path,
                      *, count: int = 30, per_row: int = 10) -> Path:
    """Figures 9-10: the first ``count`` inputs of a batch below their extractions, grey where not extracted
    (``per_row`` images per row)."""
    count = min(count, len(originals))
    rows, missing = [], []
    for start in range(0, count, per_row):
        stop = min(start + per_row, count)
        rows += [extracted[start:stop], originals[start:stop]]
        missing += [~recovered[start:stop], None]
    return image_grid(rows, path, row_labels=["extracted", "original"] * (len(rows) // 2), missing=missing)


def reproduce_trap_weights(config: TrapReproductionConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run the tables (resuming finished cells in ``out``), write ``tables.txt``, ``summary.json`` and the
    figures, and return the mean A/P/R per table row."""
    results = ResultsDir(out, asdict(config))
    done = results.finished()
    grey, grey_name = load_images(config.dataset, config.root, None)
    colour, colour_name = load_images(config.colour_dataset, config.colour_root, config.colour_size)
    archs = {"fcnn": (grey, PAPER_COLUMN.get(grey_name, "MNIST")),
             "cnn": (colour, PAPER_COLUMN.get(colour_name, "CIFAR10"))}
    bar = tqdm(desc="trap-weights cells", disable=not progress)

    def cells(key: str, data, arch: str, **options) -> dict[str, float]:
        runs = []
        for run in range(config.runs):
            name = f"{key}/run={run}"
            if name not in done:
                done[name] = results.add(name, measure(data, arch, run=run, config=config, **options))
                bar.update()
            runs.append(done[name])
        return _mean(runs)

    summary: dict = {}
    lines = [f"Boenisch et al. (paper 002) reproduction: FC-NN on {grey_name}, CNN on {colour_name}; "
             f"mean of {config.runs} runs; paper numbers in brackets ({archs['fcnn'][1]} / {archs['cnn'][1]})."]
    if "2" in config.tables:
        lines += ["", "Table 2: passive attack per initialiser (B=100, N=1000, FC-NN on both datasets)",
                  f"{'initialiser':16s} {'P  R (grey)':14s} [paper]      {'P  R (colour)':14s} [paper]"]
        for init in INITIALISERS:
            row = {arch: cells(f"t2/{arch}/{init}", data, "fcnn", batch=config.batch_size, neurons=config.neurons,
                               initialiser=init) for arch, (data, _) in archs.items()}
            summary[f"table2/{init}"] = row
            paper = PAPER_TABLE2[init]
            lines.append(f"{init:16s} {_fmt(row['fcnn'], 'PR'):14s} [{_fmt(paper[archs['fcnn'][1]], 'PR')}]"
                         f"  {_fmt(row['cnn'], 'PR'):14s} [{_fmt(paper[archs['cnn'][1]], 'PR')}]")
    best = {"fcnn": 0.7, "cnn": 0.95}  # the paper's best s for MNIST and CIFAR-10, unless Table 5 runs
    if "5" in config.tables:
        lines += ["", "Table 5: trap weights per scaling factor s (B=100, N=1000)",
                  f"{'s':6s} {'A  P  R (fcnn)':20s} [paper]             {'A  P  R (cnn)':20s} [paper]"]
        recall = {"fcnn": {}, "cnn": {}}
        for s in SCALE_FACTORS:
            row = {arch: cells(f"t5/{arch}/s={s}", data, arch, batch=config.batch_size, neurons=config.neurons,
                               scale_factor=s) for arch, (data, _) in archs.items()}
            summary[f"table5/{s}"] = row
            for arch in row:
                recall[arch][s] = row[arch]["R"]
            lines.append(f"{s:<6.3f} {_fmt(row['fcnn']):20s} [{_fmt(PAPER_TABLE5[s][archs['fcnn'][1]])}]"
                         f"  {_fmt(row['cnn']):20s} [{_fmt(PAPER_TABLE5[s][archs['cnn'][1]])}]")
        best = {arch: max(values, key=values.get) for arch, values in recall.items()}
        lines.append(f"best s: fcnn {best['fcnn']}, cnn {best['cnn']}")
    summary["best_s"] = best
    if "6" in config.tables:
        lines += ["", f"Table 6: trap weights per (N, B) (s = {best['fcnn']} fcnn, {best['cnn']} cnn)",
                  f"{'(N, B)':12s} {'A  P  R (fcnn)':20s} [paper]             {'A  P  R (cnn)':20s} [paper]"]
        for neurons, batch in NEURONS_BATCHES:
            row = {arch: cells(f"t6/{arch}/N={neurons}/B={batch}/s={best[arch]}", data, arch, batch=batch,
                               neurons=neurons, scale_factor=best[arch]) for arch, (data, _) in archs.items()}
            summary[f"table6/{neurons},{batch}"] = row
            paper = PAPER_TABLE6[(neurons, batch)]
            lines.append(f"{str((neurons, batch)):12s} {_fmt(row['fcnn']):20s} [{_fmt(paper[archs['fcnn'][1]])}]"
                         f"  {_fmt(row['cnn']):20s} [{_fmt(paper[archs['cnn'][1]])}]")
    if "9" in config.tables:
        lines += ["", f"Table 9: trap weights under averaging of num batches of B (FC-NN, N=1000, s={best['fcnn']}); "
                      "R over all num x B inputs; the average of num equal-size batch gradients is the gradient "
                      "of their union, so (20, 5) equals (100, 1)", f"{'(B, num)':10s} {'A  P  R':20s} [paper, MNIST]"]
        for batch, num in AVERAGED:
            row = cells(f"t9/B={batch}/num={num}/s={best['fcnn']}", grey, "fcnn", batch=batch * num,
                        neurons=config.neurons, scale_factor=best["fcnn"])
            summary[f"table9/{batch},{num}"] = row
            lines.append(f"{str((batch, num)):10s} {_fmt(row):20s} [{_fmt(PAPER_TABLE9[(batch, num)])}]")
    bar.close()
    for arch, (data, _) in archs.items():
        cell = measure(data, arch, run=0, batch=config.batch_size, neurons=config.neurons, config=config,
                       scale_factor=best[arch], keep=True)
        figure = extraction_figure(*cell["images"], results.path / f"figure_{arch}.png")
        lines.append(f"figure ({'Fig. 9' if arch == 'fcnn' else 'Fig. 10'}): {figure} "
                     f"(first 30 of a batch of {config.batch_size}, s={best[arch]}, R={cell['R']:.2f})")
    text = "\n".join(lines) + "\n"
    results.write_text("tables.txt", text)
    results.write_json("summary.json", summary)
    return {"text": text, "summary": summary}
