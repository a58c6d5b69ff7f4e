"""Packaging for mtl_ehrnet: one network for bottom-up pose estimation and semantic segmentation."""
from setuptools import find_packages, setup

setup(
    name="mtl_ehrnet",
    version="0.1.0",
    description=(
        "EfficientHRNet multi-task pose estimation + semantic segmentation in one network, "
        "trained by knowledge distillation from single-task teachers"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["mtl_ehrnet*", "teachers*", "distill*", "evaluation*"]),
    package_data={"mtl_ehrnet.recipes": ["*.yaml"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "segmentation-models-pytorch>=0.3",
        "pycocotools>=2.0.7",
        "cityscapesscripts>=2.2",
        "numpy>=1.23",
        "onnx>=1.14",
        "onnxruntime>=1.16",  # ONNX parity checks and CPU deployment
        # Video in/out for `predict`: PyAV binds FFmpeg's libraries (wheels bundle them, H.264 included), so
        # any video FFmpeg reads works, decode errors surface as exceptions, and no ffmpeg binary is needed.
        "av>=12",
        "tqdm>=4.60",
        "scipy>=1.10",  # Hungarian matching in pose grouping
        "Pillow>=9.0",  # image I/O for the dataset formats
        "PyYAML>=6.0",  # run configs (safe_load only)
        "matplotlib>=3.6",  # training curves and the accuracy-vs-MACs plot
    ],
    extras_require={
        # HigherHRNet's assignment solver: its tie-breaking decides which people the reference pipeline
        # (evaluate --reference-pipeline --munkres) reproduces; versions 2 and 3 break ties differently.
        "reference": ["munkres>=1.0.12,<2"],
        "test": ["pytest>=7", "munkres>=1.0.12,<2", "ruff>=0.4"],
    },
    entry_points={
        "console_scripts": ["mtl-ehrnet=mtl_ehrnet.cli:main"],
        # Each package registers its own subcommands so that the core never imports upward.
        "mtl_ehrnet.commands": [
            "synth=mtl_ehrnet.data.commands:register_synth",
            "data-benchmark=mtl_ehrnet.data.commands:register_benchmark",
            "synth-classes=mtl_ehrnet.data.classification_commands:register_synth_classes",
            "train-backbone=mtl_ehrnet.training.commands:register",
            "convert=mtl_ehrnet.convert.commands:register",
            "info=evaluation.commands.info:register",
            "evaluate=evaluation.commands.evaluate:register",
            "benchmark=evaluation.commands.benchmark:register",
            "export=evaluation.commands.export:register",
            "predict=evaluation.commands.predict:register",
            "train-teacher=teachers.commands:register",
            "distill=distill.commands:register",
            "compare=evaluation.commands.compare:register",
            "recipes=mtl_ehrnet.recipes.commands:register",
            "quickstart=distill.commands:register_quickstart",
            "record-answers=distill.commands:register_record_answers",
        ],
        # Checkpoint kinds other than EfficientHRNet, built by the package that owns them (checkpoint.load_model).
        "mtl_ehrnet.model_kinds": [
            "efficientnet_classifier=mtl_ehrnet.models.classifier:from_config",
            "smp=teachers.smp_teacher:from_config",
        ],
    },
)
