"""ament_python package definition for g3r_ros (also installable with plain pip)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "g3r_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.pt") + glob("models/*.md")),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "transforms3d", "scipy", "tqdm", "plyfile", "rosbags"],
    extras_require={"cuda": ["gsplat==1.5.3"]},
    zip_safe=True,
    maintainer="g3r_ros maintainers",
    maintainer_email="g3r_ros@example.com",
    description="G3R gradient-guided generalizable reconstruction as a ROS 2 package",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "g3r = g3r_ros.cli:main",
            "reconstruct_node = g3r_ros.ros.node:main",
        ],
    },
)
