"""Published numbers we compare against (quoted, not measured here), with their sources."""

PAPER = "GiMeFive (arXiv 2402.15662), Table 3: 6 classes, 64×64, trained from scratch"
PAPER_ACCURACY = {  # test accuracy in %, as printed in the paper
    "baseline": {"raf-db": 80.6, "fer2013": 64.1},
    "resnet18": {"raf-db": 81.3, "fer2013": 64.7},
    "resnet34": {"raf-db": 83.7, "fer2013": 67.1},
    "vgg16": {"raf-db": 83.3, "fer2013": 49.4},
    "gimefive": {"raf-db": 86.5, "fer2013": 67.5},
}
PEERS = "measured on these splits by the project (shared/docs/FACTS.md), whole 64×64 image as the face"
PEER_ACCURACY = {
    "fer package (mini-Xception)": {"raf-db": 66.3, "fer2013": 69.7, "raf-db macro-F1": 45.9, "fer2013 macro-F1": 66.1},
    "facial-emotion-recognition 0.3.4": {"raf-db": 55.3, "fer2013": 57.0},
}
