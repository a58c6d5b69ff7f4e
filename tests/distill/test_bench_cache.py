"""The cache benchmark times both paths on real data and reports the ratio the issue asks about."""
from bench_cache import bench_cache
from mtl_ehrnet.data import Cityscapes, CocoKeypoints, TestTransform


def test_bench_cache_reports_online_and_cached_steps(synth) -> None:
    result = bench_cache(
        synth.root, "pose_h-4", "seg_h-4", "mtl_h-4", input_size=64, batch_size=2, steps=1, tag_kd="relational"
    )
    assert result["online_s_per_step"] > 0 and result["cached_s_per_step"] > 0 and result["cache_build_s"] > 0
    # An epoch is every pose image with people plus every segmentation image, in whole batches of 2.
    pose = CocoKeypoints(
        synth.coco_images("train"), synth.coco_annotations("train"), TestTransform(64), skip_empty=True
    )
    seg = Cityscapes(synth.cityscapes_root, "train", TestTransform(64))
    assert result["epoch_steps"] == (len(pose) + len(seg)) // 2 >= 1
    assert result["cache_build_in_online_epochs"] > 0
    assert result["cache_input_size"] == [96]  # distill's default: 1.5x the input, a multiple of 32


def test_bench_cache_times_a_mirrored_blended_cache(synth) -> None:
    result = bench_cache(
        synth.root,
        "pose_h-4",
        "seg_h-4",
        "mtl_h-4",
        input_size=64,
        batch_size=2,
        steps=1,
        tag_kd="relational",
        cache_input_size=[64, 96],
        cache_mirrored=True,
        cache_blend=True,
    )
    assert (result["cache_input_size"], result["cache_mirrored"], result["cache_blend"]) == ([64, 96], True, True)
    assert result["cached_s_per_step"] > 0
