"""Brazilian states and a set of real cities (IBGE codes), shared by both simulators and the seeder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    ibge: str
    name: str
    uf: str
    ddd: str
    cep_prefix: str  # first 5 digits of a CEP in that city


STATES: list[tuple[str, str]] = [
    ("AC", "Acre"), ("AL", "Alagoas"), ("AP", "Amapá"), ("AM", "Amazonas"), ("BA", "Bahia"),
    ("CE", "Ceará"), ("DF", "Distrito Federal"), ("ES", "Espírito Santo"), ("GO", "Goiás"),
    ("MA", "Maranhão"), ("MT", "Mato Grosso"), ("MS", "Mato Grosso do Sul"),
    ("MG", "Minas Gerais"), ("PA", "Pará"), ("PB", "Paraíba"), ("PR", "Paraná"),
    ("PE", "Pernambuco"), ("PI", "Piauí"), ("RJ", "Rio de Janeiro"),
    ("RN", "Rio Grande do Norte"), ("RS", "Rio Grande do Sul"), ("RO", "Rondônia"),
    ("RR", "Roraima"), ("SC", "Santa Catarina"), ("SP", "São Paulo"), ("SE", "Sergipe"),
    ("TO", "Tocantins"),
]

CITIES: list[City] = [
    City("3550308", "São Paulo", "SP", "11", "01310"),
    City("3509502", "Campinas", "SP", "19", "13010"),
    City("3548500", "Santos", "SP", "13", "11010"),
    City("3543402", "Ribeirão Preto", "SP", "16", "14010"),
    City("3549904", "São José dos Campos", "SP", "12", "12210"),
    City("3552205", "Sorocaba", "SP", "15", "18010"),
    City("3304557", "Rio de Janeiro", "RJ", "21", "20040"),
    City("3303302", "Niterói", "RJ", "21", "24020"),
    City("3106200", "Belo Horizonte", "MG", "31", "30110"),
    City("3170206", "Uberlândia", "MG", "34", "38400"),
    City("3205309", "Vitória", "ES", "27", "29010"),
    City("4106902", "Curitiba", "PR", "41", "80010"),
    City("4113700", "Londrina", "PR", "43", "86010"),
    City("4205407", "Florianópolis", "SC", "48", "88010"),
    City("4209102", "Joinville", "SC", "47", "89201"),
    City("4202404", "Blumenau", "SC", "47", "89010"),
    City("4314902", "Porto Alegre", "RS", "51", "90010"),
    City("4305108", "Caxias do Sul", "RS", "54", "95010"),
    City("2927408", "Salvador", "BA", "71", "40010"),
    City("2611606", "Recife", "PE", "81", "50010"),
    City("2304400", "Fortaleza", "CE", "85", "60010"),
    City("2408102", "Natal", "RN", "84", "59010"),
    City("2507507", "João Pessoa", "PB", "83", "58010"),
    City("2704302", "Maceió", "AL", "82", "57010"),
    City("2800308", "Aracaju", "SE", "79", "49010"),
    City("2211001", "Teresina", "PI", "86", "64000"),
    City("2111300", "São Luís", "MA", "98", "65010"),
    City("1501402", "Belém", "PA", "91", "66010"),
    City("1302603", "Manaus", "AM", "92", "69010"),
    City("1100205", "Porto Velho", "RO", "69", "76801"),
    City("1100023", "Ariquemes", "RO", "69", "76870"),
    City("5300108", "Brasília", "DF", "61", "70040"),
    City("5208707", "Goiânia", "GO", "62", "74010"),
    City("5002704", "Campo Grande", "MS", "67", "79002"),
    City("5103403", "Cuiabá", "MT", "65", "78005"),
]

CITY_BY_IBGE: dict[str, City] = {c.ibge: c for c in CITIES}
