"""Built-in Factus v1 reference tables (a subset) and loaders for the full DIAN tables.

Factus numbers its catalogues by position: the v1 id of a municipality, unit or country is its
1-based row in the DIAN table ordered as published (department, then name). The built-in subset keeps
those ids (every department capital, the municipalities named in the Factus docs, the common units
and countries); :func:`load_table` reads a full table in the published JSON shape and numbers it the
same way, so the emulator and the validator agree on every id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = [
    "COUNTRIES",
    "CUSTOMER_TRIBUTES",
    "DOCUMENT_TYPES",
    "IDENTIFICATION_DOCUMENTS",
    "LEGAL_ORGANIZATIONS",
    "MAX_AMOUNT",
    "MAX_NIT_DIGITS",
    "MAX_QUANTITY",
    "MUNICIPALITIES",
    "NIT_DOCUMENT_ID",
    "OPERATION_TYPES",
    "PAYMENT_FORMS",
    "PAYMENT_METHODS",
    "PRODUCT_TRIBUTES",
    "STANDARD_CODES",
    "UNITS",
    "WITHHOLDING_CODES",
    "Country",
    "Municipality",
    "Unit",
    "load_table",
]


@dataclass(frozen=True, slots=True)
class Municipality:
    """A Colombian municipality: Factus id, DIVIPOLA code, name and department."""

    id: int
    code: str
    name: str
    department_code: str
    department: str


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit of measure: Factus id and UN/ECE code."""

    id: int
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Country:
    """A country: Factus id and ISO 3166 alpha-2 code."""

    id: int
    code: str
    name: str


MUNICIPALITIES: tuple[Municipality, ...] = (
    Municipality(5, "91001", "Leticia", "91", "Amazonas"),
    Municipality(12, "05002", "Abejorral", "05", "Antioquia"),
    Municipality(27, "05088", "Bello", "05", "Antioquia"),
    Municipality(57, "05266", "Envigado", "05", "Antioquia"),
    Municipality(69, "05360", "Itagüi", "05", "Antioquia"),
    Municipality(80, "05001", "Medellin", "05", "Antioquia"),
    Municipality(98, "05631", "Sabaneta", "05", "Antioquia"),
    Municipality(137, "81001", "Arauca", "81", "Arauca"),
    Municipality(145, "88001", "San Andres", "88", "Archipielago De San Andres"),
    Municipality(147, "08001", "Barranquilla", "08", "Atlantico"),
    Municipality(165, "08758", "Soledad", "08", "Atlantico"),
    Municipality(169, "11001", "Bogotá, D.c.", "11", "Bogota- D.c."),
    Municipality(178, "13001", "Cartagena", "13", "Bolivar"),
    Municipality(329, "15001", "Tunja", "15", "Boyaca"),
    Municipality(347, "17001", "Manizales", "17", "Caldas"),
    Municipality(372, "18001", "Florencia", "18", "Caqueta"),
    Municipality(400, "85001", "Yopal", "85", "Casanare"),
    Municipality(427, "19001", "Popayan", "19", "Cauca"),
    Municipality(467, "20001", "Valledupar", "20", "Cesar"),
    Municipality(489, "27001", "Quibdo", "27", "Choco"),
    Municipality(512, "23001", "Monteria", "23", "Cordoba"),
    Municipality(528, "25001", "Agua De Dios", "25", "Cundinamarca"),
    Municipality(544, "25175", "Chia", "25", "Cundinamarca"),
    Municipality(554, "25269", "Facatativa", "25", "Cundinamarca"),
    Municipality(557, "25286", "Funza", "25", "Cundinamarca"),
    Municipality(586, "25473", "Mosquera", "25", "Cundinamarca"),
    Municipality(613, "25754", "Soacha", "25", "Cundinamarca"),
    Municipality(643, "25899", "Zipaquira", "25", "Cundinamarca"),
    Municipality(647, "94001", "Inirida", "94", "Guainia"),
    Municipality(656, "95001", "San Jose Del Guaviare", "95", "Guaviare"),
    Municipality(675, "41001", "Neiva", "41", "Huila"),
    Municipality(704, "44001", "Riohacha", "44", "La Guajira"),
    Municipality(734, "47001", "Santa Marta", "47", "Magdalena"),
    Municipality(766, "50001", "Villavicencio", "50", "Meta"),
    Municipality(809, "52001", "Pasto", "52", "Nariño"),
    Municipality(841, "54001", "Cucuta", "54", "Norte De Santander"),
    Municipality(874, "86001", "Mocoa", "86", "Putumayo"),
    Municipality(885, "63001", "Armenia", "63", "Quindio"),
    Municipality(906, "66001", "Pereira", "66", "Risaralda"),
    Municipality(919, "68001", "Bucaramanga", "68", "Santander"),
    Municipality(943, "68276", "Floridablanca", "68", "Santander"),
    Municipality(947, "68307", "Giron", "68", "Santander"),
    Municipality(971, "68547", "Piedecuesta", "68", "Santander"),
    Municipality(980, "68679", "San Gil", "68", "Santander"),
    Municipality(996, "68872", "Villanueva", "68", "Santander"),
    Municipality(1021, "70001", "Sincelejo", "70", "Sucre"),
    Municipality(1045, "73001", "Ibague", "73", "Tolima"),
    Municipality(1076, "76109", "Buenaventura", "76", "Valle Del Cauca"),
    Municipality(1079, "76001", "Cali", "76", "Valle Del Cauca"),
    Municipality(1114, "97001", "Mitu", "97", "Vaupes"),
    Municipality(1121, "99001", "Puerto Carreño", "99", "Vichada"),
)

UNITS: tuple[Unit, ...] = (
    Unit(70, "94", "unidad"),
    Unit(195, "BO", "botella"),
    Unit(204, "BX", "caja"),
    Unit(263, "C62", "uno"),
    Unit(302, "CA", "Caja"),
    Unit(318, "CMT", "centímetro"),
    Unit(324, "CR", "caja"),
    Unit(377, "HUR", "hora"),
    Unit(414, "KGM", "kilogramo"),
    Unit(436, "KT", "equipo"),
    Unit(444, "KWH", "kilovatios hora"),
    Unit(449, "LBR", "libra"),
    Unit(454, "LEF", "hoja"),
    Unit(468, "LTR", "litro"),
    Unit(494, "MIN", "minuto"),
    Unit(499, "MLT", "mililitro"),
    Unit(502, "MMT", "milímetro"),
    Unit(510, "MTK", "metro cuadrado"),
    Unit(511, "MTQ", "Metro cúbico"),
    Unit(512, "MTR", "metro"),
    Unit(533, "NIU", "número de unidades internacionales"),
    Unit(604, "A9", "tarifa"),
    Unit(739, "BG", "bolso"),
    Unit(794, "DAY", "día"),
    Unit(824, "DZN", "docena"),
    Unit(830, "EA", "cada"),
    Unit(874, "GLL", "galón"),
    Unit(880, "GRM", "gramo"),
    Unit(932, "PK", "paquete"),
    Unit(938, "PR", "par"),
    Unit(973, "RO", "rodar"),
    Unit(992, "SEC", "segundo"),
    Unit(993, "SET", "conjunto"),
    Unit(1007, "ST", "hoja"),
    Unit(1032, "TNE", "tonelada (tonelada métrica)"),
    Unit(1043, "TU", "tubo"),
    Unit(1069, "WEE", "semana"),
    Unit(1093, "ZZ", "mutuamente definido"),
)

COUNTRIES: tuple[Country, ...] = (
    Country(4, "DE", "Alemania"),
    Country(12, "AR", "Argentina"),
    Country(31, "BR", "Brasil"),
    Country(40, "CA", "Canadá"),
    Country(43, "CL", "Chile"),
    Country(44, "CN", "China"),
    Country(46, "CO", "Colombia"),
    Country(51, "CR", "Costa Rica"),
    Country(57, "EC", "Ecuador"),
    Country(64, "ES", "España"),
    Country(65, "US", "Estados Unidos"),
    Country(71, "FR", "Francia"),
    Country(118, "IT", "Italia"),
    Country(120, "JP", "Japón"),
    Country(150, "MX", "México"),
    Country(175, "PA", "Panamá"),
    Country(178, "PE", "Perú"),
    Country(183, "GB", "Reino Unido"),
    Country(189, "DO", "República Dominicana"),
    Country(243, "VE", "Venezuela"),
)

# identification_document_id -> (DIAN code, name)
IDENTIFICATION_DOCUMENTS: dict[int, tuple[str, str]] = {
    1: ("11", "Registro civil"),
    2: ("12", "Tarjeta de identidad"),
    3: ("13", "Cédula de ciudadanía"),
    4: ("21", "Tarjeta de extranjería"),
    5: ("22", "Cédula de extranjería"),
    6: ("31", "NIT"),
    7: ("41", "Pasaporte"),
    8: ("42", "Documento de identificación extranjero"),
    9: ("47", "PEP"),
    10: ("50", "NIT otro país"),
    11: ("91", "NUIP"),
}
NIT_DOCUMENT_ID = 6

# Upper bounds that keep every amount (line = price × quantity, then sums) exact in Decimal
# arithmetic; beyond them a value is a field error, like any other out-of-range value (the
# emulator answers 422; intake reports the cell before anything is sent).
MAX_QUANTITY = 999_999_999
MAX_AMOUNT = Decimal("999999999999.99")
MAX_NIT_DIGITS = 15

# legal_organization_id -> (code, name)
LEGAL_ORGANIZATIONS: dict[int, tuple[str, str]] = {1: ("1", "Persona Jurídica"), 2: ("2", "Persona Natural")}

# customer tribute_id -> (code, name)
CUSTOMER_TRIBUTES: dict[int, tuple[str, str]] = {18: ("01", "IVA"), 21: ("ZZ", "No aplica")}

# product tribute_id -> (code, name, description)
PRODUCT_TRIBUTES: dict[int, tuple[str, str, str]] = {
    1: ("01", "IVA", "Impuesto sobre la Ventas"),
    2: ("02", "IC", "Impuesto al Consumo Departamental Nominal"),
    3: ("03", "ICA", "Impuesto de Industria, Comercio y Aviso"),
    4: ("04", "INC", "Impuesto Nacional al Consumo"),
    5: ("05", "ReteIVA", "Retención sobre el IVA"),
    6: ("06", "ReteRenta", "Retención sobre renta"),
    7: ("07", "ReteICA", "Retención sobre el ICA"),
    8: ("08", "IC Porcentual", "Impuesto al Consumo Departamental Porcentual"),
    9: ("20", "FtoHorticultura", "Cuota de Fomento Hortifrutícula"),
    10: ("21", "Timbre", "Impuesto de Timbre"),
    11: ("22", "INC Bolsas", "Impuesto Nacional al Consumo de Bolsa Plástica"),
    12: ("23", "INCarbono", "Impuesto Nacional del Carbono"),
    13: ("24", "INCarbono", "Impuesto Nacional a los Combustibles"),
    14: ("24", "INCombustibles", "Impuesto Nacional a los Combustibles"),
    15: ("25", "Sobretasa Combustibles", "Sobretasa a los combustibles"),
    16: ("26", "Sordicom", "Contribuciones Sordicom"),
    17: ("30", "IC Datos", "Impuesto al Consumo de Datos"),
}

# withholding codes allowed in items[].withholding_taxes -> name
WITHHOLDING_CODES: dict[str, str] = {"05": "ReteIVA", "06": "ReteRenta", "07": "ReteICA"}

# standard_code_id -> (code, name)
STANDARD_CODES: dict[int, tuple[str, str]] = {
    1: ("999", "Estándar de adopción del contribuyente"),
    2: ("001", "UNSPSC"),
    3: ("020", "Partida Arancelaria"),
    4: ("010", "GTIN"),
}

PAYMENT_FORMS: dict[str, str] = {"1": "Pago de contado", "2": "Pago a crédito"}
PAYMENT_METHODS: dict[str, str] = {
    "10": "Efectivo",
    "42": "Consignación",
    "20": "Cheque",
    "47": "Transferencia",
    "71": "Bonos",
    "72": "Vales",
    "1": "Medio de pago no definido",
    "49": "Tarjeta Débito",
    "48": "Tarjeta Crédito",
    "ZZZ": "Otro",
}
OPERATION_TYPES: dict[str, str] = {"10": "Estándar", "11": "Mandatos", "12": "Transporte"}
DOCUMENT_TYPES: dict[str, str] = {
    "01": "Factura electrónica de Venta",
    "03": "Instrumento electrónico de transmisión - tipo 03",
}


def load_table(path: Path) -> list[dict[str, Any]]:
    """Read a DIAN table in the published JSON shape and number its rows as Factus does.

    The file holds one top-level key (``municipalities``, ``unitMeasures`` or ``countries``) with a
    list of rows; each returned row gains ``id`` = its 1-based position.
    """
    raw = json.loads(path.read_text(encoding="utf-8"))
    rows = next(iter(raw.values())) if isinstance(raw, dict) else raw
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of rows")
    return [{"id": i, **row} for i, row in enumerate(rows, start=1)]
