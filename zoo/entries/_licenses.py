"""Licences of record shared by several entries.

Facts: each upstream ``LICENSE`` file (MrGiovanni/ModelsGenesis, Tencent/MedicalNet, MrGiovanni/SuPreM on GitHub)
and the licence field of each Hugging Face Hub card; summarised in docs/upstream-checkpoints.md section 5.
"""

from ..entry import License

ASU_NONCOMMERCIAL = License(
    spdx="other",
    name="ASU non-commercial research licence (Models Genesis)",
    link="https://github.com/MrGiovanni/ModelsGenesis/blob/master/LICENSE",
    redistributable=False,
    commercial_use=False,
    notice=(
        "Models Genesis weights are licensed by Arizona Board of Regents solely for academic and other "
        "non-commercial research (patent pending, Tech ID M19-252LC); commercial use needs a written agreement. "
        "The upstream Hub card's 'apache-2.0' conflicts with the licence of record. Not for diagnostic use."
    ),
    card_license="apache-2.0",
)

MIT = License(spdx="mit", notice="")

CC_BY_NC_ND = License(
    spdx="cc-by-nc-nd-4.0",
    redistributable=False,
    commercial_use=False,
    notice=(
        "SuPreM weights are CC BY-NC-ND 4.0 (Johns Hopkins University; patents pending): non-commercial, no "
        "redistribution of derivatives, so medzoo converts them only in your local cache. The upstream Hub "
        "card's 'apache-2.0' conflicts with the licence of record. Not for diagnostic use."
    ),
    card_license="apache-2.0",
)
