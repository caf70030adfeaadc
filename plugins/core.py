"""Built-in datasets, architectures and tracks, registered through the same entry point
mechanism as any third-party plugin (entry point ``core`` of the ``coreset_bench`` group).

The tracks themselves live in ``coreset_bench.tracks`` (one module per track); the methods in this
package's per-kind subpackages (``selection/``, ``training/``, ``attack/``, ``privacy/``,
``noise_correction/``, ``distillation/``, ``provisioning/``), each method module registered by its
own entry point in ``pyproject.toml``.
"""

from coreset_bench import hookimpl
from coreset_bench.data import BUILTIN_DATASETS
from coreset_bench.models import BUILTIN_ARCHITECTURES


@hookimpl
def register_datasets(register):
    for spec in BUILTIN_DATASETS:
        register(spec)


@hookimpl
def register_architectures(register):
    for arch in BUILTIN_ARCHITECTURES:
        register(arch)


@hookimpl
def register_tracks(register):
    from coreset_bench.tracks.coreset import CoresetTrack

    register(CoresetTrack())
    from coreset_bench.tracks.robustness import RobustnessTrack

    register(RobustnessTrack())

    from coreset_bench.tracks.privacy import MemorizationTrack, PrivacyTrack

    register(PrivacyTrack())
    register(MemorizationTrack())
    from coreset_bench.tracks.label_noise import LabelNoiseTrack

    register(LabelNoiseTrack())
    from coreset_bench.tracks.pooling import PoolingTrack

    register(PoolingTrack())
    from coreset_bench.tracks.decentralized import DecentralizedTrack

    register(DecentralizedTrack())

    from coreset_bench.tracks.video import VideoTrack

    register(VideoTrack())

    from coreset_bench.tracks.instruction import InstructionTrack

    register(InstructionTrack())
