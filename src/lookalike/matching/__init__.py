"""Image matching: keypoints, patches, descriptors, matchers, geometry."""
