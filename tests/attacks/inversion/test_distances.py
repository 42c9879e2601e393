"""The cosine distance (fedleak.attacks.inversion.distances) with its small layers reduced together: the value
and the gradient of the plain formula, with plain, small and factored per-victim gradients mixed."""
import torch

from fedleak.attacks.inversion.distances import DISTANCES
from fedleak.fl.factored import RankOne


def test_cosine_distance_of_mixed_layers_equals_the_formula():
    torch.manual_seed(0)
    victims = 5
    target = {"big": torch.randn(victims, 70, 80), "bias": torch.randn(victims, 7), "small": torch.randn(victims, 3, 4),
              "factored": torch.randn(victims, 6, 9), "bias2": torch.randn(victims, 2)}
    names = list(target)
    g, a = torch.randn(victims, 6, requires_grad=True), torch.randn(victims, 9, requires_grad=True)
    plain = {n: torch.randn(victims, *t.shape[1:], requires_grad=True) for n, t in target.items() if n != "factored"}
    distance = DISTANCES.get("cosine")(target, names)
    for _ in range(2):  # the second call reuses the concatenated target
        ours = distance({**plain, "factored": RankOne(g, a, torch.Size([6, 9]))})
        dummy = {**plain, "factored": g.unsqueeze(2) * a.unsqueeze(1)}
        flat = lambda grads: torch.cat([grads[n].flatten(1) for n in names], 1)  # noqa: E731
        expected = 1 - torch.nn.functional.cosine_similarity(flat(dummy), flat(target), dim=1, eps=1e-12)
        assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-6)
        inputs = [g, a, *plain.values()]
        for got, want in zip(torch.autograd.grad(ours.sum(), inputs), torch.autograd.grad(expected.sum(), inputs)):
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
