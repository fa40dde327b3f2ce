"""The paper protocols (MiB's class orders and image filters): Pascal VOC 2012 and ADE20K read
from where they are on disk, one scenario per incremental step."""
