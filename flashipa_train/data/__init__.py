"""Structure data: preprocessing of PDB/mmCIF/BinaryCIF files (biotite) and the training DataModule.

Importing this package does not import biotite; only `flashipa_train.data.preprocess` and the
modules it uses do, so training on preprocessed examples needs numpy and torch only.
"""
