"""The published numbers of every reproduced table and figure, in one place (STYLE.md "Paper numbers in one
place"); the reproduction commands print ours beside them and write both to ``comparison.md``.

Names say the paper (``P001_`` Scheliga et al., ``P002_`` Boenisch et al.; numbering of /work/shared/papers) and
the table. Values are copied from the paper's text, in its units.
"""
from __future__ import annotations

# Paper 002, Table 2: passive attack, (P, R) per initialiser, B = 100, N = 1000, per dataset.
P002_TABLE2 = {
    "xavier_normal": {"MNIST": (.004, .037), "CIFAR10": (.048, .203), "ImageNet": (.046, .213)},
    "xavier_uniform": {"MNIST": (.005, .048), "CIFAR10": (.053, .229), "ImageNet": (.040, .201)},
    "gaussian_0.01": {"MNIST": (.005, .048), "CIFAR10": (.051, .226), "ImageNet": (.041, .203)},
    "gaussian_0.1": {"MNIST": (.005, .049), "CIFAR10": (.053, .238), "ImageNet": (.043, .209)},
    "gaussian_0.5": {"MNIST": (.006, .050), "CIFAR10": (.058, .255), "ImageNet": (.044, .218)},
    "gaussian_1": {"MNIST": (.006, .059), "CIFAR10": (.058, .256), "ImageNet": (.045, .218)},
    "gaussian_2": {"MNIST": (.007, .061), "CIFAR10": (.058, .259), "ImageNet": (.047, .217)},
}
# Paper 002, Table 5: trap weights, (A, P, R) per scaling factor s, B = 100, N = 1000.
P002_TABLE5 = {
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
P002_TABLE6 = {
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
P002_TABLE9 = {
    (20, 1): (.544, .459, .995), (20, 5): (.471, .540, .190), (20, 10): (.461, .508, .100),
    (20, 20): (.484, .468, .047), (50, 1): (.706, .317, .750), (50, 5): (.630, .327, .169),
    (50, 10): (.716, .311, .082), (50, 20): (.655, .332, .040), (100, 1): (.798, .214, .542),
    (100, 5): (.822, .197, .107), (100, 10): (.783, .230, .060), (100, 20): (.759, .248, .026),
}
P002_COLUMN = {"mnist": "MNIST", "fashion_mnist": "MNIST", "emnist": "MNIST", "bundled": "MNIST", "digits": "MNIST",
               "cifar10": "CIFAR10", "cifar100": "CIFAR10", "skimage_photos": "CIFAR10", "imagefolder": "ImageNet"}

# Paper 002, §9.1-9.2 and Fig. 4 (qualitative, one MNIST point at the first fully-connected layer): clipping alone at
# the user's end leaves the input perfectly extractable (Fig. 4a); with local noise after clipping at c = 1.0, "an
# adequate amount of noise to mitigate our attack would be a sigma > 1" (Fig. 4b). No numbers beyond these.
P002_DP = {"clip": 1.0, "clipping_alone": "perfect extraction (Fig. 4a)", "sigma_that_mitigates": "> 1 (Fig. 4b)"}

# Paper 001, Tables 1-3: (SSIM mean, SSIM std, ASR %) per (dataset, model), then per (defense, attack); the
# defense keys are those of fedleak.experiments.inversion_defenses ("none", "dp:sigma=0.001", "prune:p=0.9",
# "precode", "cvb"). None where the plain-text copy of the paper lost the number.
P001_COLUMN = {"mnist": "MNIST", "fashion_mnist": "MNIST", "emnist": "MNIST", "bundled": "MNIST", "digits": "MNIST",
               "cifar10": "CIFAR-10", "cifar100": "CIFAR-10", "skimage_photos": "CIFAR-10"}
P001_MODEL = {"cnn": "CNN", "vit_small": "ViT", "resnet18": "ResNet-18"}
# Table 1: DP with (tau_clip, sigma) = (20, 1e-3); the paper has no sigma = 1e-4 column (its ablation's setting).
P001_TABLE1 = {
    ("MNIST", "CNN"): {("none", "ig"): (.95, .06, 100.), ("dp:sigma=0.001", "ig"): (.64, .11, 85.16),
                       ("dp:sigma=0.001", "wiig"): (.90, .06, 100.), ("dp:sigma=0.001", "dpia"): (.29, .13, 5.47)},
    ("MNIST", "ViT"): {("none", "ig"): (.99, .00, 100.), ("dp:sigma=0.001", "ig"): (.55, .09, 76.56),
                       ("dp:sigma=0.001", "wiig"): (.94, .03, 100.), ("dp:sigma=0.001", "dpia"): (.08, .06, 0.)},
    ("CIFAR-10", "CNN"): {("none", "ig"): (.87, .11, 96.88), ("dp:sigma=0.001", "ig"): (.31, .11, 5.47),
                          ("dp:sigma=0.001", "wiig"): (.82, .06, 100.), ("dp:sigma=0.001", "dpia"): (.26, .10, 1.56)},
    ("CIFAR-10", "ViT"): {("none", "ig"): (.90, .05, 100.), ("dp:sigma=0.001", "ig"): (.21, .07, 0.),
                          ("dp:sigma=0.001", "wiig"): (.77, .08, 100.), ("dp:sigma=0.001", "dpia"): (.09, .04, 0.)},
}
# Table 2: gradient pruning at p. The text copy scrambles the rows; this is our reading, checked against §4.2's
# text (GPIA ASR 99.22 / 66.41 at p = 0.95 and 49.22 / 3.91 at 0.99 for the CNN, 100 for the ViT on MNIST at every
# p, 83.59 for the ViT on CIFAR-10 at 0.99). The ViT's MNIST SSIMs at 0.95 and 0.99 and its GPIA SSIMs were lost.
P001_TABLE2 = {
    ("MNIST", "CNN"): {("none", "ig"): (.95, .06, 100.),
                       ("prune:p=0.9", "ig"): (.63, .09, 89.84), ("prune:p=0.9", "gpia"): (.91, .07, 100.),
                       ("prune:p=0.95", "ig"): (.52, .08, 64.06), ("prune:p=0.95", "gpia"): (.82, .12, 99.22),
                       ("prune:p=0.99", "ig"): (.24, .05, 0.), ("prune:p=0.99", "gpia"): (.50, .13, 49.22)},
    ("MNIST", "ViT"): {("none", "ig"): (.99, .00, 100.), ("prune:p=0.9", "ig"): (.20, .06, 0.),
                       ("prune:p=0.9", "gpia"): (None, None, 100.), ("prune:p=0.95", "gpia"): (None, None, 100.),
                       ("prune:p=0.99", "gpia"): (None, None, 100.)},
    ("CIFAR-10", "CNN"): {("none", "ig"): (.87, .11, 96.88),
                          ("prune:p=0.9", "ig"): (.48, .08, 46.88), ("prune:p=0.9", "gpia"): (.70, .12, 90.62),
                          ("prune:p=0.95", "ig"): (.32, .07, 0.), ("prune:p=0.95", "gpia"): (.53, .15, 66.41),
                          ("prune:p=0.99", "ig"): (.15, .04, 0.), ("prune:p=0.99", "gpia"): (.29, .13, 3.91)},
    ("CIFAR-10", "ViT"): {("none", "ig"): (.90, .05, 100.),
                          ("prune:p=0.9", "ig"): (.09, .04, 0.), ("prune:p=0.9", "gpia"): (.77, .07, 100.),
                          ("prune:p=0.95", "ig"): (.02, .02, 0.), ("prune:p=0.95", "gpia"): (.71, .08, 100.),
                          ("prune:p=0.99", "ig"): (.01, .01, 0.), ("prune:p=0.99", "gpia"): (.59, .09, 83.59)},
}
# Table 3: the privacy modules PRECODE and CVB against PIG, WIIG and VBIA.
P001_TABLE3 = {
    ("MNIST", "CNN"): {("none", "ig"): (.95, .06, 100.),
                       ("precode", "pig"): (.42, .09, 21.09), ("precode", "wiig"): (.87, .13, 98.44),
                       ("precode", "vbia"): (.95, .07, 100.), ("cvb", "pig"): (.29, .09, .78),
                       ("cvb", "wiig"): (.95, .04, 100.), ("cvb", "vbia"): (.88, .09, 99.22)},
    ("MNIST", "ViT"): {("none", "ig"): (.99, .00, 100.),
                       ("precode", "pig"): (.04, .02, 0.), ("precode", "wiig"): (.99, .00, 100.),
                       ("precode", "vbia"): (.94, .03, 100.), ("cvb", "pig"): (.37, .08, 7.03),
                       ("cvb", "wiig"): (1., 0., 100.), ("cvb", "vbia"): (1., 0., 100.)},
    ("CIFAR-10", "CNN"): {("none", "ig"): (.87, .11, 96.88),
                          ("precode", "pig"): (.32, .09, 3.91), ("precode", "wiig"): (.83, .15, 96.09),
                          ("precode", "vbia"): (.88, .07, 99.22), ("cvb", "pig"): (.21, .08, 0.),
                          ("cvb", "wiig"): (.78, .14, 92.19), ("cvb", "vbia"): (.72, .13, 93.75)},
    ("CIFAR-10", "ViT"): {("none", "ig"): (.90, .05, 100.),
                          ("precode", "pig"): (.03, .02, 0.), ("precode", "wiig"): (.93, .03, 100.),
                          ("precode", "vbia"): (.81, .07, 100.), ("cvb", "pig"): (.16, .06, 0.),
                          ("cvb", "wiig"): (1., 0., 100.), ("cvb", "vbia"): (1., 0., 100.)},
}

# Paper 002, §9.3 (qualitative, citing Sun et al. [44]): pruning the smallest gradient entries "manages to prevent a
# perfect extractability", yet "the extracted data is still recognizable when 80% of the gradients are pruned".
P002_PRUNING = {"exact": "prevented", "recognisable_up_to_p": 0.8}

# Paper 002, §8.4: trap weights (s = 0.99, N = 1000) in TensorFlow Federated's FedAvg over 50 users: (R, P) mean
# ± std.
P002_FEDAVG = {"EMNIST": {"R": (.32, .07), "P": (.05, .02), "R_passive": (.10, .05), "P_passive": (.02, .01)},
               "CIFAR100": {"R": (.44, .05), "P": (.22, .06), "R_passive": (.20, .04), "P_passive": (.04, .01)},
               "text": "EMNIST R 0.32 ± 0.07, P 0.05 ± 0.02; CIFAR100 R 0.44 ± 0.05, P 0.22 ± 0.06"}

# Paper 002, Table 4: passive extraction at the first layer of the FC-NN (Xavier uniform) as training progresses,
# (training loss, A, P, R) per epoch, B = 100, mean of 10 runs.
P002_TABLE4 = {
    0: {"MNIST": (.526, .998, .005, .050), "CIFAR10": (1.857, .907, .053, .232)},
    5: {"MNIST": (.067, .997, .044, .137), "CIFAR10": (1.352, .900, .044, .195)},
    10: {"MNIST": (.021, .997, .116, .154), "CIFAR10": (1.088, .913, .041, .196)},
    15: {"MNIST": (.006, .997, .131, .165), "CIFAR10": (.768, .923, .043, .206)},
    20: {"MNIST": (.002, .997, .136, .167), "CIFAR10": (.472, .931, .050, .232)},
    25: {"MNIST": (.001, .997, .140, .169), "CIFAR10": (.282, .935, .058, .241)},
    30: {"MNIST": (.001, .997, .142, .168), "CIFAR10": (.200, .936, .062, .267)},
}

# Paper 002, §8.5 and Figs. 5-6 (qualitative): trap weights against Inverting Gradients [17] on one MNIST image
# (B = 1).
P002_VS_INVERSION = {
    "trap_weights": "l2 error 0, no back-propagation iterations, milliseconds",
    "ig": "pixel-wise l2 error down to 1e-4 within 10^4 iterations (FC-NN); ~1 h per CIFAR10 image with 32 restarts",
}

# Paper 000, §4.1 (qualitative claims about SEER [14]; SEER itself reports its figures only as plots).
P000_SEER = {
    "seer": "the brightest image of a batch reconstructed from the gradient, batches up to 512, also through "
            "secure aggregation [14]",
    "needs_batch_norm": "without batch norm's inter-sample coupling the in-batch property cannot be selected; group "
                        "and layer norm normalise each sample alone (§4.1.1)",
    "fedavg_neutralises": "local training overwrites the manipulation: degraded after 5 FedSGD rounds [14], worse "
                          "with FedAvg's local epochs (§4.1.3)",
    "warmup_detects": "the warm-up detector flags even learning-based attacks such as SEER (§5)",
}

# Paper 000 (Wang & Li), §5.3, Table 1 and Figs. 2-3. The text copy lost Table 1's numbers; what its prose states:
# 5 warm-up steps on 128 local samples take 0.72-0.88 s (RTX 4090); a benign model's z-scores stay close to zero,
# the largest benign z-mean in the final warm-up step is 9.44 (batchnorm[1]_activation), "well below the detection
# threshold"; under the fishing attack [41] the first and last FC layers' Z-mean/std/max are "several orders of
# magnitude higher" after one step; a benign ResNet-18's max Z over training rounds stays below 4000 (Fig. 3);
# D-SNR stays close to 0, under its threshold 1, before and after Robbing the Fed (Fig. 2c-d); the warm-up Z-score
# detects "the full spectrum of known gradient leakage attacks" (§6).
P000_DETECTION = {
    "warmup_seconds": (0.72, 0.88),
    "benign_final_z_mean": 9.44,
    "fig3_benign_max_z_below": 4000.0,
    "fig2_dsnr_after_robbing": "close to 0, below the threshold 1 (D-SNR misses the attack)",
    "table1_malicious_vs_benign": "first/last FC Z-scores several orders of magnitude above benign",
    "detection": "every known attack flagged by the warm-up Z-score",
    "false_alarms": "none (benign z-scores well below the threshold)",
}

# Paper 002, Table 3: IMDB with the model of Table 8 (N = 1000), (A, P, R) per batch size B for the passive attack
# and the active one (uniform embeddings + trap weights), mean of 10 runs.
P002_TABLE3 = {
    20: {"passive": (.842, .072, .900), "active": (.519, .610, 1.)},
    50: {"passive": (.885, .050, .552), "active": (.776, .376, .962)},
    100: {"passive": (.909, .036, .254), "active": (.910, .192, .654)},
    200: {"passive": (.927, .030, .128), "active": (.978, .070, .255)},
}

# Paper 001, Table 5: the ablation on ResNet-18 (group norm) and the ViT, the rows Table 4 found promising, as
# (SSIM mean, SSIM std, ASR %, accuracy %, accuracy std) per row label of fedleak.experiments.ablation. The text copy
# misplaces the dataset/model labels; the order (MNIST ResNet-18, MNIST ViT, CIFAR-10 ResNet-18, CIFAR-10 ViT) is
# checked against §6.2's prose (accuracy +0.03 / +0.20 with DP+C on MNIST, -0.72 / +5.59 with DO+DP+P on CIFAR-10,
# DP alone lowering the ResNet-18's ASR by 14.85 and 1.57 points).
P001_TABLE5 = {
    ("MNIST", "ResNet-18"): {
        "none": (.51, .12, 53.91, 99.51, .02), "P": (.25, .15, 7.03, 99.35, .04), "C": (.37, .12, 14.06, 99.46, .01),
        "DP": (.46, .11, 39.06, 99.52, .04), "DP+P": (.21, .11, 0., 99.42, .03), "DP+C": (.04, .02, 0., 99.54, .02),
        "DO": (.59, .10, 80.47, 99.44, .01), "DO+DP+P": (.13, .07, 0., 99.46, .10),
        "DO+DP+C": (.03, .02, 0., 99.52, .02)},
    ("MNIST", "ViT"): {
        "none": (.99, .00, 100., 98.84, .00), "P": (.94, .03, 100., 98.63, .00), "C": (1., .00, 100., 98.95, .03),
        "DP": (.98, .01, 100., 98.85, .00), "DP+P": (.02, .04, 0., 98.36, .00), "DP+C": (.21, .06, 0., 99.04, .00),
        "DO": (.98, .02, 100., 99.09, .00), "DO+DP+P": (.00, .04, 0., 98.81, .00),
        "DO+DP+C": (.13, .04, 0., 98.91, .00)},
    ("CIFAR-10", "ResNet-18"): {
        "none": (.55, .11, 72.66, 73.99, .13), "P": (.28, .20, 15.62, 74.82, .27), "C": (.38, .14, 20.31, 74.23, .57),
        "DP": (.55, .11, 71.09, 71.98, .20), "DP+P": (.21, .11, 0., 73.25, .06), "DP+C": (.06, .03, 0., 71.55, .23),
        "DO": (.63, .10, 89.84, 74.03, .13), "DO+DP+P": (.13, .08, 0., 73.27, .42),
        "DO+DP+C": (.06, .03, 0., 72.02, .28)},
    ("CIFAR-10", "ViT"): {
        "none": (.90, .05, 100., 63.71, .00), "P": (.81, .07, 100., 64.53, .00), "C": (1., .00, 100., 63.44, .38),
        "DP": (.86, .05, 100., 61.83, .43), "DP+P": (.01, .02, 0., 61.99, .00), "DP+C": (.11, .05, 0., 61.31, .00),
        "DO": (.92, .04, 100., 69.47, .00), "DO+DP+P": (.01, .01, 0., 69.30, .00),
        "DO+DP+C": (.06, .03, 0., 61.18, .00)},
}

# Yin et al. 2021 ("See Through Gradients", GradInversion), issue 24: the batch-norm statistics prior is reported
# to improve batch recovery on ImageNet with a trained ResNet-50 (ablation of the regularisers, B up to 48). The
# paper's text is not among /work/shared/papers, so no figure is copied here: the comparison states the claim only.
YIN2021_BN_PRIOR_CLAIM = "the BN statistics prior improves batch reconstructions over no prior (ImageNet, ResNet-50)"
# Dimitrov et al. 2022 ("Data Leakage in Federated Averaging", TMLR), issue 24: share of FEMNIST images recovered
# (PSNR >= 20 dB) from FedAvg updates of several local epochs; the paper reports "over 45%".
DIMITROV2022_FEMNIST_RECOVERED = 0.45
# Its abstract: "compared to only <10% using the baseline" (10 local epochs of 10 batches of 5 images).
DIMITROV2022_FEMNIST_IG_RECOVERED = 0.10
# SPEAR (Dimitrov et al., NeurIPS 2024; not in /work/shared/papers): its abstract's headline, the only figure fedleak
# takes from it (the per-batch-size success plots were not available offline to copy numbers from).
SPEAR = {"exact_batches_up_to": 25, "claim": "recovers ImageNet inputs in batches of up to b ~ 25 exactly "
                                            "(GPU; FC-ReLU networks), also from FedAvg updates"}

# QBI (Nowak et al. 2024; not in /work/shared/papers): its abstract's headline gains in perfectly reconstructed
# samples over the earlier malicious initialisations.
QBI = {"gain_imagenet": 0.50, "gain_imdb": 0.60,
       "claim": "up to +50% perfectly reconstructed samples on ImageNet and +60% on IMDB over earlier "
                "initialisations (percentage points of the batch)"}
# PAIRS (same paper): the abstract gives no figure of its own; the headline above is "our approach", QBI with PAIRS
# where a dataset of the target domain is available.
PAIRS = {"claim": "raises the fully recovered share further over QBI when the server has data of the target domain "
                  "(no separate figure in the abstract)"}
