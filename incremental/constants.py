"""Constants shared by every part of the framework."""

#: The one mask value meaning "don't care": padding, augmentation fill, borders.
#: Its candidate set is every class, so it contributes nothing to any loss or metric.
IGNORE_INDEX = 255

#: Mask values are stored as uint8, so a dataset can declare at most this many values.
NUM_MASK_VALUES = 256
