"""assess-margin's settings: the assets it knows and its tier policy."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from shared.assets import Asset
from shared.pricing.settings import DEFAULT_PRICE_MAX_JUMP
from shared.risk.tiers import THRESHOLD_TIERS
from shared.settings import EnvReader

# Health-factor tiers (Aave-like): below each threshold a position is in that tier.
DEFAULT_RISK_TIER_THRESHOLDS = "WARNING=1.5,MARGIN_CALL=1.2,LIQUIDATION=1.0"
# A position leaves a worse tier only once its health factor is this far above the tier's threshold.
DEFAULT_RISK_HYSTERESIS = Decimal("0.05")


@dataclass(frozen=True)
class RiskSettings:
    """The assets `assess-margin` knows and its tier policy."""

    assets: tuple[Asset, ...]
    # (tier name, health factor below which a position is in it), best to worst.
    tier_thresholds: tuple[tuple[str, Decimal], ...]
    hysteresis: Decimal
    # The same bound fetch-price holds prices to: a larger unconfirmed move is refused, not applied.
    max_jump: Decimal

    @classmethod
    def read(cls, reader: EnvReader) -> RiskSettings:
        """Read the risk variables, recording what is missing or malformed."""
        text = reader.optional("RISK_TIER_THRESHOLDS") or DEFAULT_RISK_TIER_THRESHOLDS
        thresholds: dict[str, Decimal] = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            try:
                thresholds[name.strip()] = Decimal(value.strip())
            except InvalidOperation:
                reader.malformed.append(f"RISK_TIER_THRESHOLDS: {part!r} is not NAME=decimal")
        expected = THRESHOLD_TIERS
        if set(thresholds) != set(expected):
            reader.malformed.append(f"RISK_TIER_THRESHOLDS must set exactly {', '.join(expected)}")
        elif not thresholds["WARNING"] > thresholds["MARGIN_CALL"] > thresholds["LIQUIDATION"] > 0:
            reader.malformed.append("RISK_TIER_THRESHOLDS must fall: WARNING > MARGIN_CALL > LIQUIDATION > 0")
        return cls(
            assets=reader.assets(),
            tier_thresholds=tuple((name, thresholds.get(name, Decimal(0))) for name in expected),
            hysteresis=reader.decimal("RISK_HYSTERESIS", DEFAULT_RISK_HYSTERESIS),
            max_jump=reader.decimal("PRICE_MAX_JUMP", DEFAULT_PRICE_MAX_JUMP),
        )
