"""flashipa_train: SE(3) flow-matching protein backbone generation with a FlashIPA trunk."""
