// none (NoPE): no position information; the causal mask alone lets a model infer order.
#include "pe.h"

const PositionalEncoding pe_none = {
    .name = "none",
    .summary = "no positional encoding (NoPE): the causal mask alone",
};
