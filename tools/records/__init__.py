"""The trial record and its vocabulary: `Trial`, the fields a data set carries, normalised names, splits, the writer's output format, the paper's selection rule."""
