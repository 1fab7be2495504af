"""Code sources: what the training code itself says: the subject built on the meta device
(effective) and its facts (subject_facts); a static reader of unknown code goes in code/reader/.
Imports the subject (fgclip) and the ground floor; never launch/, checkpoint/ or data/."""
