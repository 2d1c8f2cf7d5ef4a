"""What each system's records hold: a field schema per native collection, declared as data.

A mapping names native paths (``Email``, ``City.IBGECode``, ``cabecalho.etapa``,
``det[].produto.codigo_produto``); a typo in one reads ``None`` from every record and would plan
blanking that field on the other side. The loader checks every path against these schemas
before anything runs (:mod:`etl.mapping.paths`).

The fields come from the vendors' published types and field docs (Ploomes ``IContacts`` &c.,
Omie's WSDL-generated ``clientes_cadastro`` &c.) and what the sandbox simulators serve.

* :class:`Obj` is one JSON object: its field names, each a leaf (``None``) or a nested
  :class:`Obj`; ``many`` marks a list of such objects (``Phones``, ``det``).
* Ploomes custom fields live in the ``OtherProperties`` list, one item per field, selected by
  ``FieldKey`` (``OtherProperties[FieldKey=contact_…].StringValue``). Their keys are not static:
  :meth:`CollectionSchema.with_custom` adds the ones the account's ``/Fields`` lists.
* ``always_sent``: the paths every record of a listing carries, even when empty; ``None`` =
  every declared field (Ploomes: OData sends every property of a record, null when empty, and
  the connector uses no ``$select``). Omie leaves out tags that were never filled, so only the
  fields it requires (or always renders) are listed. The run-time guard that stops an entity
  whose mapped path no record carries judges only these paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from etl.errors import ConfigError

_SELECTORS = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class Obj:
    """A JSON object's known fields; ``many`` = a list of such objects."""

    fields: MappingProxyType[str, Obj | None]
    many: bool = False


def obj(names: str = "", /, **nested: Obj) -> Obj:
    """An object with the leaf fields in ``names`` (space separated) and ``nested`` objects."""
    fields: dict[str, Obj | None] = dict.fromkeys(names.split())
    fields.update(nested)
    return Obj(MappingProxyType(fields))


def many(names: str = "", /, **nested: Obj) -> Obj:
    """A list of objects with these fields."""
    return replace(obj(names, **nested), many=True)


@dataclass(frozen=True)
class CollectionSchema:
    system: str  # the vendor's name, for messages: "Ploomes", "Omie"
    collection: str  # the native collection, as mapping files name it
    root: Obj
    always_sent: frozenset[str] | None = None
    custom_list: str | None = None  # the list field that carries custom fields
    custom_key: str = "FieldKey"  # the item field that names a custom field
    custom_keys: frozenset[str] | None = None  # None: not fetched (offline check)

    def with_custom(self, keys: set[str] | frozenset[str]) -> CollectionSchema:
        return replace(self, custom_keys=frozenset(keys))

    def always_carries(self, path: str) -> bool:
        """Does every record of a listing carry ``path`` (list selectors ignored)?"""
        return self.always_sent is None or _SELECTORS.sub("", path) in self.always_sent


@dataclass(frozen=True)
class SystemSchema:
    """Every collection of one system kind (``ploomes``, ``omie``)."""

    kind: str
    system: str
    collections: dict[str, CollectionSchema] = field(default_factory=dict)
    custom_entity_ids: dict[str, int] = field(default_factory=dict)  # collection -> /Fields id

    def collection(self, name: str) -> CollectionSchema:
        try:
            return self.collections[name]
        except KeyError:
            raise ConfigError(
                f"{self.system} has no collection {name!r} "
                f"(valid: {', '.join(sorted(self.collections))})") from None


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- Ploomes (reference A6; what the sandbox renders) --------------------------------------

_P_AUDIT = "Id CreateDate LastUpdateDate CreatorId UpdaterId Editable Deletable"
_P_OTHER = many("""Id FieldId FieldKey ContactId DealId QuoteId OrderId ProductId StringValue
BigStringValue IntegerValue DecimalValue DateTimeValue BoolValue ObjectValueId ObjectValueName
UserValueId ContactValueId ProductValueId""")
_P_PERSON = obj("Id Name Email")
_P_LOOKUP = obj("Id Name")

PLOOMES = SystemSchema("ploomes", "Ploomes", {
    "Contacts": CollectionSchema("Ploomes", "Contacts", obj(
        f"""{_P_AUDIT} TypeId Name LegalName CNPJ CPF Register IdentityDocument Email Website
        StreetAddress StreetAddressNumber StreetAddressLine2 Neighborhood ZipCode ForeignZipCode
        CityId StateId CountryId CompanyId OwnerId StatusId OriginId LineOfBusinessId
        NumberOfEmployeesId CNAECode CNAEName Note Birthday Latitude Longitude Key""",
        Phones=many("Id ContactId PhoneNumber SearchPhoneNumber TypeId CountryId"),
        Tags=many("TagId", Tag=obj("Id Name")),
        OtherProperties=_P_OTHER,
        City=obj("Id Name IBGECode StateId CountryId"),
        State=obj("Id Name Short CountryId"),
        Country=_P_LOOKUP, Owner=_P_PERSON, Status=_P_LOOKUP, Type=_P_LOOKUP,
        Origin=_P_LOOKUP, LineOfBusiness=_P_LOOKUP,
        Company=obj("Id Name LegalName Register"),
    ), custom_list="OtherProperties"),
    "Products": CollectionSchema("Ploomes", "Products", obj(
        f"""{_P_AUDIT} Name Code MeasurementUnit UnitPrice CurrencyId GroupId FamilyId ImageUrl
        Suspended""",
        OtherProperties=_P_OTHER, Group=_P_LOOKUP, Family=_P_LOOKUP,
    ), custom_list="OtherProperties"),
    "Orders": CollectionSchema("Ploomes", "Orders", obj(
        f"""{_P_AUDIT} OrderNumber Date ContactId ContactName PersonId DealId StageId Amount
        Discount OwnerId TemplateId Description Key OriginQuoteId ApprovalStatusId""",
        Products=many("""Id OrderId SectionId ProductId ProductName Quantity UnitPrice Discount
        Total CurrencyId Bonus""", Product=obj("Id Name Code"), OtherProperties=_P_OTHER),
        Sections=many("Id OrderId Code Discount Total"),
        OtherProperties=_P_OTHER,
        Contact=obj("Id Name LegalName Register"), Owner=_P_PERSON, Stage=_P_LOOKUP,
        Deal=obj("Id Title"),
    ), custom_list="OtherProperties"),
}, custom_entity_ids={"Contacts": 1, "Orders": 4, "Products": 10})


# --- Omie (reference B3/B6; what the sandbox renders) ---------------------------------------

_O_INFO = obj("dInc hInc uInc dAlt hAlt uAlt cImpAPI")
_O_CLIENTE = obj(
    """codigo_cliente_omie codigo_cliente_integracao razao_social cnpj_cpf nome_fantasia
    telefone1_ddd telefone1_numero telefone2_ddd telefone2_numero fax_ddd fax_numero email
    homepage contato endereco endereco_numero complemento bairro estado cidade cidade_ibge cep
    codigo_pais separar_endereco pesquisar_cep inscricao_estadual inscricao_municipal
    inscricao_suframa optante_simples_nacional produtor_rural contribuinte tipo_atividade cnae
    observacao obs_detalhadas pessoa_fisica exterior importado_api valor_limite_credito
    bloquear_faturamento nif documento_exterior inativo bloquear_exclusao""",
    tags=many("tag"),
    recomendacoes=obj("numero_parcelas codigo_vendedor email_fatura gerar_boletos "
                      "codigo_transportadora"),
    enderecoEntrega=obj("""entRazaoSocial entCnpjCpf entEndereco entNumero entComplemento
    entBairro entCEP entEstado entCidade entTelefone entIE"""),
    dadosBancarios=obj("agencia codigo_banco conta_corrente doc_titular nome_titular "
                       "transf_padrao"),
    caracteristicas=many("campo conteudo"),
    info=_O_INFO,
)
_O_PRODUTO = obj(
    """codigo_produto codigo_produto_integracao codigo descricao unidade ncm ean valor_unitario
    codigo_familia tipoItem peso_liq peso_bruto altura largura profundidade marca modelo
    descr_detalhada obs_internas bloqueado inativo importado_api quantidade_estoque cst_icms
    aliquota_icms cst_pis cst_cofins cfop""",
    tabelas_preco=many("nCodTabPreco cNomeTabPreco nValorTabPreco"),
    recomendacoes_fiscais=obj("origem_mercadoria id_preco_tabelado id_cest cupom_fiscal "
                              "market_place indicador_escala cnpj_fabricante"),
    info=_O_INFO,
)
_O_PEDIDO = obj(
    cabecalho=obj("""codigo_pedido codigo_pedido_integracao numero_pedido codigo_cliente
    codigo_cliente_integracao data_previsao etapa codigo_parcela qtde_parcelas quantidade_itens
    origem_pedido codigo_empresa bloqueado importado_api"""),
    det=many(
        ide=obj("codigo_item_integracao codigo_item simples_nacional acao_item"),
        produto=obj("""codigo_produto codigo_produto_integracao codigo descricao cfop ncm ean
        unidade quantidade valor_unitario valor_mercadoria valor_desconto tipo_desconto
        percentual_desconto valor_total"""),
        inf_adic=obj("peso_bruto peso_liquido"),
        observacao=obj("obs_item"),
        imposto=obj(),
    ),
    frete=obj("modalidade codigo_transportadora quantidade_volumes especie_volumes "
              "peso_bruto peso_liquido valor_frete valor_seguro"),
    informacoes_adicionais=obj("""codigo_categoria codigo_conta_corrente consumidor_final
    enviar_email codVend codProj numero_pedido_cliente dados_adicionais_nf"""),
    lista_parcelas=obj(parcela=many("data_vencimento numero_parcela percentual valor")),
    observacoes=obj("obs_venda"),
    total_pedido=obj("""valor_total_pedido valor_mercadorias valor_descontos base_calculo_icms
    valor_icms valor_ipi valor_pis valor_cofins"""),
    infoCadastro=obj("""dInc hInc uInc dAlt hAlt uAlt cImpAPI dCan hCan uCan cancelado dFat
    hFat uFat faturado denegado autorizado devolvido devolvido_parcial"""),
    departamentos=many("cCodDepto nPerc nValor nValorFixo"),
    exportacao=obj(),
)

# Omie leaves out tags that were never filled: only what it requires on inclusion, or always
# renders, is carried by every record of a listing
OMIE = SystemSchema("omie", "Omie", {
    "clientes": CollectionSchema("Omie", "clientes", _O_CLIENTE, always_sent=_words(
        "codigo_cliente_omie razao_social inativo info info.dAlt info.hAlt")),
    "produtos": CollectionSchema("Omie", "produtos", _O_PRODUTO, always_sent=_words(
        "codigo_produto descricao unidade valor_unitario inativo info info.dAlt info.hAlt")),
    "pedidos": CollectionSchema("Omie", "pedidos", _O_PEDIDO, always_sent=_words(
        """cabecalho cabecalho.codigo_pedido cabecalho.codigo_cliente cabecalho.data_previsao
        cabecalho.etapa det det.produto det.produto.codigo_produto det.produto.quantidade
        det.produto.valor_unitario infoCadastro total_pedido""")),
})

#: Schemas by connector kind (``PONTE_CRM__KIND`` / ``PONTE_ERP__KIND``).
SCHEMAS: dict[str, SystemSchema] = {"ploomes": PLOOMES, "omie": OMIE}


def schema_for(kind: str) -> SystemSchema:
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise ConfigError(f"no field schema for connector {kind!r} "
                          f"(valid: {', '.join(sorted(SCHEMAS))})") from None

