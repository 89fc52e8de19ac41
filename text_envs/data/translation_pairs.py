"""Seeded English / French / Chinese sentence triples for ``MachineTranslation-v0`` (WMT's row format).

:func:`translation_pair_row` computes row ``index`` of a split on demand, like the other embedded generators
(:mod:`text_envs.data.generators`): ``{"translation": {"en": str, "fr": str, "zh": str}}``, the same meaning
in three real languages, so any pair of them is a translation task (the env offers ``en``/``fr`` -> ``zh``,
``zh`` -> ``en``/``fr`` and ``en`` <-> ``fr``).

**What the sentences say.** People (nouns and given names), animals and things doing things: a subject, a
verb (transitive with a thing, a serving such as "a cup of tea" or a being as object; intransitive; or a
French *être* verb such as *arriver*), a tense (present with a frequency or habitual time word, past,
future), optionally an adjective per noun phrase, a place and a time, and at difficulty 3 two clauses joined
by "but", "because", "so" or "and then".

**Grammar, per language.**

* English: subject-verb agreement (``sleeps``/``sleep``), irregular plurals and pasts (``mice``, ``fell``),
  ``a``/``an``, frequency adverbs before the verb (``often buys``), place then time at the end.
* French: gendered nouns with agreement of articles (``le``/``la``/``l'``, ``un``/``une``, ``ce``/``cet``/
  ``cette``, ``mon``/``ma``, and ``mon`` before a feminine vowel), of adjectives (``une voiture noire``,
  ``de vieilles maisons``; ``vieil``/``bel``/``nouvel`` before a masculine vowel) and of past participles
  with *être* (``Ces filles sont arrivées``); *passé composé* for the past, *futur proche* (``va acheter``)
  for the future; prepositions contracted (``au marché``, ``à l'école``), ``parce qu'`` before a vowel.
* Chinese: numeral or demonstrative + measure word + noun (``三本书``, ``两辆汽车``, ``这只狗``,
  ``一杯茶``, ``几张桌子``); possessives with ``的`` and no measure word; word order subject, time, (``会``),
  place, verb, object (``我的姐姐昨天在市场买了三本书。``); ``了`` marks the past, ``会`` the future.
  Chinese punctuation (``，`` ``。``) and no spaces; numbers above ten stay Arabic digits in every language.

Conventions that keep every direction deterministic (each sentence has one translation in each language):
English "sister" is 姐姐 and "brother" 哥哥, "your" is French *ton/ta* (你的), "the" is 那 + measure word
("this" is 这 + measure word), occupation nouns take one French gender (*le médecin*, *l'infirmière*),
"his"/"her"/"that"/"those" are not used (French *son*/*ce* would merge them) and plural possessives
neither (Chinese ``我的狗`` is one dog or many). A test checks that every text of each language determines
the other two.

**Difficulty**: 1 = one short clause without adjective, place or time phrase (present tense takes a
frequency adverb: ``My sister often sings.``); 2 = adjectives, places, time phrases, "a few", numbers up to
99 (in objects; subjects count to ten, in words); 3 = two clauses. **Splits** (train 50,000 / validation
1,000 / test 1,000 rows) are disjoint by construction: every choice of a row is a key fact that its
sentences spell out, and the facts are redrawn until their folded key lands in the split's buckets (train
18 of 20, validation 1, test 1), so identical sentences always fall in the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from text_envs.data.drawing import NUM_BUCKETS, Draw, check_row, upper_first

__all__ = ["PAIR_LANGS", "LANGUAGE_PAIRS", "translation_pair_row", "lexicon_texts"]

PAIR_LANGS = ("en", "fr", "zh")
"""The languages of :func:`translation_pair_row`'s rows."""
LANGUAGE_PAIRS = tuple((s, t) for s in PAIR_LANGS for t in PAIR_LANGS if s != t)
"""Every ``(source_lang, target_lang)`` pair the embedded triples offer."""

_FR_VOWELS = frozenset("aeiouyéèêëàâîïôöûùüœæAEIOUYÉÈÊÀÂÎÔŒ")
_FR_MUTE_H = ("homme", "hôpital", "hôtel", "heure", "herbe", "histoire", "hiver")


def _fr_vowel(word: str) -> bool:
    """True when a French word elides the word before it (vowel or mute h)."""
    return word[:1] in _FR_VOWELS or word.lower().startswith(_FR_MUTE_H)


def _en_vowel(word: str) -> bool:
    return word[:1].lower() in "aeiou"


# ---------------------------------------------------------------------------------------------- lexicon
@dataclass(frozen=True)
class _Noun:
    en: str
    en_pl: str
    fr: str
    fr_pl: str
    gender: str  # "m" / "f" (French)
    zh: str
    mw: str  # Chinese measure word
    kind: str  # "person", "animal", "thing"
    tags: str = ""  # things: which verbs take them as object (see _VERBS)


@dataclass(frozen=True)
class _Serving:
    """A container of a substance: "a cup of tea" / "une tasse de thé" / "一杯茶"."""

    en: str
    en_pl: str
    en_of: str
    fr: str
    fr_pl: str
    gender: str
    fr_of: str
    mw: str
    zh: str
    liquid: bool
    kind: str = "serving"


@dataclass(frozen=True)
class _Name:
    name: str  # the same in English and French
    gender: str
    zh: str
    kind: str = "name"


def _nouns(kind: str, rows: str) -> tuple[_Noun, ...]:
    out = []
    for line in rows.strip().splitlines():
        parts = line.split()
        tags = parts[7] if len(parts) > 7 else ""
        out.append(_Noun(*(p.replace("_", " ") for p in parts[:7]), kind=kind, tags=tags))
    return tuple(out)


# en, en plural, fr, fr plural, gender, zh, measure word
_PEOPLE = _nouns("person", """
woman women femme femmes f 女人 个
man men homme hommes m 男人 个
girl girls fille filles f 女孩 个
boy boys garçon garçons m 男孩 个
child children enfant enfants m 孩子 个
king kings roi rois m 国王 位
queen queens reine reines f 女王 位
doctor doctors médecin médecins m 医生 位
teacher teachers professeur professeurs m 老师 位
farmer farmers fermier fermiers m 农民 个
cook cooks cuisinier cuisiniers m 厨师 个
baker bakers boulanger boulangers m 面包师 个
driver drivers chauffeur chauffeurs m 司机 个
student students étudiant étudiants m 学生 个
nurse nurses infirmière infirmières f 护士 个
neighbour neighbours voisin voisins m 邻居 个
friend friends ami amis m 朋友 个
mother mothers mère mères f 母亲 位
father fathers père pères m 父亲 位
sister sisters sœur sœurs f 姐姐 个
brother brothers frère frères m 哥哥 个
grandmother grandmothers grand-mère grands-mères f 奶奶 位
grandfather grandfathers grand-père grands-pères m 爷爷 位
uncle uncles oncle oncles m 叔叔 位
aunt aunts tante tantes f 阿姨 位
policeman policemen policier policiers m 警察 个
soldier soldiers soldat soldats m 士兵 个
sailor sailors marin marins m 水手 个
actress actresses actrice actrices f 女演员 个
waitress waitresses serveuse serveuses f 女服务员 个
""")
_ANIMALS = _nouns("animal", """
dog dogs chien chiens m 狗 只
cat cats chat chats m 猫 只
horse horses cheval chevaux m 马 匹
bird birds oiseau oiseaux m 鸟 只
cow cows vache vaches f 奶牛 头
goat goats chèvre chèvres f 山羊 只
sheep sheep mouton moutons m 绵羊 只
pig pigs cochon cochons m 猪 头
fox foxes renard renards m 狐狸 只
wolf wolves loup loups m 狼 只
mouse mice souris souris f 老鼠 只
bear bears ours ours m 熊 头
duck ducks canard canards m 鸭子 只
rabbit rabbits lapin lapins m 兔子 只
hen hens poule poules f 母鸡 只
snake snakes serpent serpents m 蛇 条
elephant elephants éléphant éléphants m 大象 头
tiger tigers tigre tigres m 老虎 只
monkey monkeys singe singes m 猴子 只
""")
# tags: b buy/sell, s small (find, lose, take, bring), o open, w wash, r repair, d draw, t write, l listen,
# e eat, a takes no adjective
_THINGS = _nouns("thing", """
book books livre livres m 书 本 bsot
letter letters lettre lettres f 信 封 bsot
house houses maison maisons f 房子 座 bd
boat boats bateau bateaux m 船 条 bwrd
car cars voiture voitures f 汽车 辆 bwrd
bicycle bicycles vélo vélos m 自行车 辆 bwr
bag bags sac sacs m 包 个 bsow
chair chairs chaise chaises f 椅子 把 brw
table tables table tables f 桌子 张 brw
bed beds lit lits m 床 张 br
key keys clé clés f 钥匙 把 bs
knife knives couteau couteaux m 刀 把 bsw
umbrella umbrellas parapluie parapluies m 伞 把 bsor
photo photos photo photos f 照片 张 bs
map maps carte cartes f 地图 张 bsod
ticket tickets billet billets m 票 张 bs
newspaper newspapers journal journaux m 报纸 份 bs
apple apples pomme pommes f 苹果 个 bswde
egg eggs œuf œufs m 鸡蛋 个 bse
cake cakes gâteau gâteaux m 蛋糕 块 bse
flower flowers fleur fleurs f 花 朵 bsd
tree trees arbre arbres m 树 棵 d
pen pens stylo stylos m 笔 支 bs
coat coats manteau manteaux m 外套 件 bsw
shirt shirts chemise chemises f 衬衫 件 bsw
hat hats chapeau chapeaux m 帽子 顶 bsw
computer computers ordinateur ordinateurs m 电脑 台 br
phone phones téléphone téléphones m 手机 部 bsr
box boxes boîte boîtes f 盒子 个 bso
ball balls ballon ballons m 球 个 bsw
song songs chanson chansons f 歌 首 tla
door doors porte portes f 门 扇 orw
window windows fenêtre fenêtres f 窗户 扇 orw
cup cups tasse tasses f 杯子 个 bsw
watch watches montre montres f 手表 块 bsr
""")
_SERVINGS = tuple(_Serving(*row) for row in (
    ("cup", "cups", "of tea", "tasse", "tasses", "f", "de thé", "杯", "茶", True),
    ("cup", "cups", "of coffee", "tasse", "tasses", "f", "de café", "杯", "咖啡", True),
    ("glass", "glasses", "of water", "verre", "verres", "m", "d'eau", "杯", "水", True),
    ("glass", "glasses", "of milk", "verre", "verres", "m", "de lait", "杯", "牛奶", True),
    ("glass", "glasses", "of orange juice", "verre", "verres", "m", "de jus d'orange", "杯", "橙汁", True),
    ("bottle", "bottles", "of wine", "bouteille", "bouteilles", "f", "de vin", "瓶", "葡萄酒", True),
    ("bowl", "bowls", "of soup", "bol", "bols", "m", "de soupe", "碗", "汤", True),
    ("bowl", "bowls", "of rice", "bol", "bols", "m", "de riz", "碗", "米饭", False),
    ("piece", "pieces", "of bread", "morceau", "morceaux", "m", "de pain", "块", "面包", False),
    ("plate", "plates", "of noodles", "assiette", "assiettes", "f", "de nouilles", "盘", "面条", False),
))
_NAMES = tuple(_Name(*row) for row in (
    ("Pierre", "m", "皮埃尔"), ("Paul", "m", "保罗"), ("Louis", "m", "路易"), ("Thomas", "m", "托马斯"),
    ("Lucas", "m", "卢卡斯"), ("Hugo", "m", "雨果"), ("Marc", "m", "马克"), ("Julien", "m", "朱利安"),
    ("Antoine", "m", "安托万"), ("Nicolas", "m", "尼古拉"), ("Victor", "m", "维克多"), ("David", "m", "大卫"),
    ("Olivier", "m", "奥利维耶"), ("Li Wei", "m", "李伟"), ("Wang Lei", "m", "王磊"), ("Chen Jie", "m", "陈杰"),
    ("Marie", "f", "玛丽"), ("Sophie", "f", "索菲"), ("Julie", "f", "朱莉"), ("Emma", "f", "艾玛"),
    ("Claire", "f", "克莱尔"), ("Alice", "f", "爱丽丝"), ("Anna", "f", "安娜"), ("Laura", "f", "劳拉"),
    ("Sarah", "f", "莎拉"), ("Lucie", "f", "露西"), ("Manon", "f", "玛农"), ("Li Na", "f", "李娜"),
    ("Wang Fang", "f", "王芳"), ("Zhao Min", "f", "赵敏"),
))


@dataclass(frozen=True)
class _Adjective:
    en: str
    fr: tuple[str, str, str, str]  # m sg, f sg, m pl, f pl
    fr_vowel: str | None  # masculine singular before a vowel (vieil, bel, nouvel)
    before: bool  # French position: before the noun
    zh: dict  # kind -> Chinese form (missing kind: the adjective does not apply)


def _adj(en: str, fr: str, before: bool, zh: str, kinds: str, fr_vowel: str | None = None) -> _Adjective:
    forms = tuple(fr.split("/"))
    zh_forms = zh.split("/")
    zh_by_kind = {"p": zh_forms[0], "a": zh_forms[min(1, len(zh_forms) - 1)], "t": zh_forms[-1]}
    table = {"p": "person", "a": "animal", "t": "thing"}
    return _Adjective(en, forms, fr_vowel, before, {table[k]: zh_by_kind[k] for k in kinds})


_ADJECTIVES = (
    _adj("big", "grand/grande/grands/grandes", True, "大", "at"),  # people: 大 would read "senior", not "big"
    _adj("small", "petit/petite/petits/petites", True, "小", "at"),
    _adj("old", "vieux/vieille/vieux/vieilles", True, "老/老/旧", "pat", "vieil"),
    _adj("young", "jeune/jeune/jeunes/jeunes", True, "年轻的", "p"),
    _adj("new", "nouveau/nouvelle/nouveaux/nouvelles", True, "新", "t", "nouvel"),
    _adj("beautiful", "beau/belle/beaux/belles", True, "漂亮的", "pat", "bel"),
    _adj("happy", "heureux/heureuse/heureux/heureuses", False, "快乐的", "pa"),
    _adj("tired", "fatigué/fatiguée/fatigués/fatiguées", False, "疲惫的", "pa"),
    _adj("kind", "gentil/gentille/gentils/gentilles", False, "善良的", "p"),
    _adj("brave", "courageux/courageuse/courageux/courageuses", False, "勇敢的", "p"),
    _adj("clever", "intelligent/intelligente/intelligents/intelligentes", False, "聪明的", "pa"),
    _adj("red", "rouge/rouge/rouges/rouges", False, "红色的", "t"),
    _adj("black", "noir/noire/noirs/noires", False, "黑色的", "at"),
    _adj("white", "blanc/blanche/blancs/blanches", False, "白色的", "at"),
    _adj("green", "vert/verte/verts/vertes", False, "绿色的", "t"),
    _adj("blue", "bleu/bleue/bleus/bleues", False, "蓝色的", "t"),
    _adj("yellow", "jaune/jaune/jaunes/jaunes", False, "黄色的", "t"),
    _adj("grey", "gris/grise/gris/grises", False, "灰色的", "at"),
    _adj("brown", "marron/marron/marron/marron", False, "棕色的", "at"),
    _adj("expensive", "cher/chère/chers/chères", False, "昂贵的", "t"),
    _adj("clean", "propre/propre/propres/propres", False, "干净的", "t"),
    _adj("dirty", "sale/sale/sales/sales", False, "脏的", "t"),
)
_ADJ_BY_KIND = {k: tuple(a for a in _ADJECTIVES if k in a.zh) for k in ("person", "animal", "thing")}


@dataclass(frozen=True)
class _Verb:
    en: tuple[str, str, str]  # base, 3rd person singular, past ("wait for" style particles included)
    fr: tuple[str, str, str, str]  # infinitive, il, ils, past participle
    etre: bool  # passé composé with être (participle agrees with the subject)
    zh: str
    subjects: str  # "p": people and names, "pa": also animals
    objects: str  # "" intransitive; "being", "animal", or thing tags ("b", "s", ...) with "+" for servings
    place: bool = True  # may take a place phrase (Chinese puts motion destinations after the verb: not used)


def _v(en: str, fr: str, zh: str, subjects: str = "p", objects: str = "", etre: bool = False,
       place: bool = True) -> _Verb:
    return _Verb(tuple(en.split("/")), tuple(fr.split("/")), etre, zh, subjects, objects, place)


_VERBS = (
    # transitive, things (tag letters) and servings ("+": any serving, "+l": liquids, "+f": food)
    _v("buy/buys/bought", "acheter/achète/achètent/acheté", "买", objects="b+"),
    _v("sell/sells/sold", "vendre/vend/vendent/vendu", "卖", objects="b"),
    _v("find/finds/found", "trouver/trouve/trouvent/trouvé", "找到", objects="s"),
    _v("lose/loses/lost", "perdre/perd/perdent/perdu", "丢", objects="s"),
    _v("take/takes/took", "prendre/prend/prennent/pris", "拿", objects="s"),
    _v("bring/brings/brought", "apporter/apporte/apportent/apporté", "带来", objects="s+"),
    _v("open/opens/opened", "ouvrir/ouvre/ouvrent/ouvert", "打开", objects="o"),
    _v("wash/washes/washed", "laver/lave/lavent/lavé", "洗", objects="w"),
    _v("repair/repairs/repaired", "réparer/répare/réparent/réparé", "修", objects="r"),
    _v("draw/draws/drew", "dessiner/dessine/dessinent/dessiné", "画", objects="d"),
    _v("write/writes/wrote", "écrire/écrit/écrivent/écrit", "写", objects="t"),
    _v("listen to/listens to/listened to", "écouter/écoute/écoutent/écouté", "听", objects="l"),
    _v("drink/drinks/drank", "boire/boit/boivent/bu", "喝", subjects="pa", objects="+l"),
    _v("eat/eats/ate", "manger/mange/mangent/mangé", "吃", subjects="pa", objects="e+f"),
    _v("order/orders/ordered", "commander/commande/commandent/commandé", "点", objects="+"),
    # transitive, beings
    _v("see/sees/saw", "voir/voit/voient/vu", "看见", subjects="pa", objects="being"),
    _v("help/helps/helped", "aider/aide/aident/aidé", "帮助", objects="being"),
    _v("meet/meets/met", "rencontrer/rencontre/rencontrent/rencontré", "遇见", objects="being"),
    _v("wait for/waits for/waited for", "attendre/attend/attendent/attendu", "等", subjects="pa", objects="being"),
    _v("thank/thanks/thanked", "remercier/remercie/remercient/remercié", "感谢", objects="being"),
    _v("feed/feeds/fed", "nourrir/nourrit/nourrissent/nourri", "喂", objects="animal"),
    _v("chase/chases/chased", "poursuivre/poursuit/poursuivent/poursuivi", "追", subjects="pa", objects="being"),
    # intransitive, avoir
    _v("sleep/sleeps/slept", "dormir/dort/dorment/dormi", "睡觉", subjects="pa"),
    _v("laugh/laughs/laughed", "rire/rit/rient/ri", "笑"),
    _v("cry/cries/cried", "pleurer/pleure/pleurent/pleuré", "哭"),
    _v("sing/sings/sang", "chanter/chante/chantent/chanté", "唱歌"),
    _v("dance/dances/danced", "danser/danse/dansent/dansé", "跳舞"),
    _v("swim/swims/swam", "nager/nage/nagent/nagé", "游泳", subjects="pa"),
    _v("work/works/worked", "travailler/travaille/travaillent/travaillé", "工作"),
    _v("run/runs/ran", "courir/court/courent/couru", "跑步", subjects="pa"),
    _v("play/plays/played", "jouer/joue/jouent/joué", "玩", subjects="pa"),
    _v("walk/walks/walked", "marcher/marche/marchent/marché", "走路"),
    # intransitive, être
    _v("arrive/arrives/arrived", "arriver/arrive/arrivent/arrivé", "到达", subjects="pa", etre=True, place=False),
    _v("leave/leaves/left", "partir/part/partent/parti", "出发", subjects="pa", etre=True, place=False),
    _v("come back/comes back/came back", "revenir/revient/reviennent/revenu", "回来", subjects="pa", etre=True,
       place=False),
    _v("stay/stays/stayed", "rester/reste/restent/resté", "留下", subjects="pa", etre=True, place=False),
    _v("fall/falls/fell", "tomber/tombe/tombent/tombé", "摔倒", subjects="pa", etre=True),
    _v("go out/goes out/went out", "sortir/sort/sortent/sorti", "出去", subjects="pa", etre=True, place=False),
    _v("come in/comes in/came in", "entrer/entre/entrent/entré", "进来", subjects="pa", etre=True, place=False),
)

# (English, English position "pre" (before the verb) / "end", French, French position "verb" (after the
# conjugated verb) / "end", Chinese)
_FREQUENCY = (
    ("often", "pre", "souvent", "verb", "经常"),
    ("sometimes", "pre", "parfois", "verb", "有时候"),
    ("usually", "pre", "généralement", "verb", "通常"),
)
_DAYS = (("Monday", "lundi", "星期一"), ("Tuesday", "mardi", "星期二"), ("Wednesday", "mercredi", "星期三"),
         ("Thursday", "jeudi", "星期四"), ("Friday", "vendredi", "星期五"), ("Saturday", "samedi", "星期六"),
         ("Sunday", "dimanche", "星期天"))
_PRESENT_TIMES = _FREQUENCY + (
    ("every day", "end", "chaque jour", "end", "每天"),
    ("every morning", "end", "chaque matin", "end", "每天早上"),
    ("every evening", "end", "chaque soir", "end", "每天晚上"),
    ("every week", "end", "chaque semaine", "end", "每个星期"),
) + tuple((f"on {en}s", "end", f"le {fr}", "end", f"每个{zh}") for en, fr, zh in _DAYS)
_PAST_TIMES = (
    ("yesterday", "end", "hier", "end", "昨天"),
    ("last night", "end", "hier soir", "end", "昨天晚上"),
    ("this morning", "end", "ce matin", "end", "今天早上"),
    ("last week", "end", "la semaine dernière", "end", "上个星期"),
    ("last month", "end", "le mois dernier", "end", "上个月"),
    ("last year", "end", "l'année dernière", "end", "去年"),
) + tuple((f"on {en}", "end", fr, "end", zh) for en, fr, zh in _DAYS)
_FUTURE_TIMES = (
    ("tomorrow", "end", "demain", "end", "明天"),
    ("tonight", "end", "ce soir", "end", "今天晚上"),
    ("next week", "end", "la semaine prochaine", "end", "下个星期"),
    ("next month", "end", "le mois prochain", "end", "下个月"),
    ("next year", "end", "l'année prochaine", "end", "明年"),
) + tuple((f"on {en}", "end", fr, "end", zh) for en, fr, zh in _DAYS)

_CITIES = (("Paris", "Paris", "巴黎"), ("London", "Londres", "伦敦"), ("Beijing", "Pékin", "北京"),
           ("Shanghai", "Shanghai", "上海"), ("Lyon", "Lyon", "里昂"), ("Marseille", "Marseille", "马赛"),
           ("Rome", "Rome", "罗马"), ("Berlin", "Berlin", "柏林"), ("Madrid", "Madrid", "马德里"),
           ("Tokyo", "Tokyo", "东京"), ("New York", "New York", "纽约"), ("Geneva", "Genève", "日内瓦"),
           ("Brussels", "Bruxelles", "布鲁塞尔"), ("Montreal", "Montréal", "蒙特利尔"), ("Nice", "Nice", "尼斯"),
           ("Bordeaux", "Bordeaux", "波尔多"), ("Toulouse", "Toulouse", "图卢兹"),
           ("Hong Kong", "Hong Kong", "香港"), ("Nanjing", "Nankin", "南京"), ("Chengdu", "Chengdu", "成都"),
           ("Hangzhou", "Hangzhou", "杭州"), ("Vienna", "Vienne", "维也纳"), ("Lisbon", "Lisbonne", "里斯本"),
           ("Venice", "Venise", "威尼斯"))
_PLACES = tuple((f"in {en}", f"à {fr}", f"在{zh}") for en, fr, zh in _CITIES) + (
    ("at the market", "au marché", "在市场"),
    ("in the garden", "dans le jardin", "在花园里"),
    ("in the park", "dans le parc", "在公园里"),
    ("at the station", "à la gare", "在车站"),
    ("in the kitchen", "dans la cuisine", "在厨房里"),
    ("at the library", "à la bibliothèque", "在图书馆"),
    ("at the hospital", "à l'hôpital", "在医院"),
    ("at the airport", "à l'aéroport", "在机场"),
    ("at the office", "au bureau", "在办公室"),
    ("at the restaurant", "au restaurant", "在餐厅"),
    ("on the beach", "sur la plage", "在海滩上"),
    ("in the forest", "dans la forêt", "在森林里"),
    ("at the bank", "à la banque", "在银行"),
    ("in the shop", "dans le magasin", "在商店里"),
    ("at school", "à l'école", "在学校"),
    ("at the museum", "au musée", "在博物馆"),
    ("in the village", "au village", "在村子里"),
    ("on the bridge", "sur le pont", "在桥上"),
    ("by the river", "au bord de la rivière", "在河边"),
    ("at the farm", "à la ferme", "在农场"),
    ("at home", "à la maison", "在家"),
    ("in the street", "dans la rue", "在街上"),
    ("at the cinema", "au cinéma", "在电影院"),
    ("at the hotel", "à l'hôtel", "在酒店"),
    ("in the mountains", "à la montagne", "在山上"),
    ("at the port", "au port", "在港口"),
    ("in the classroom", "dans la salle de classe", "在教室里"),
    ("at the zoo", "au zoo", "在动物园"),
    ("at the supermarket", "au supermarché", "在超市"),
    ("at the post office", "à la poste", "在邮局"),
)
# (English, French, Chinese) between two clauses
_CONJUNCTIONS = ((", but", ", mais", "，但是"), (" because", " parce que", "，因为"), (", so", ", donc", "，所以"),
                 (", and then", ", puis", "，然后"))

_EN_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_FR_NUMBERS = ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix")
_ZH_NUMBERS = ("零", "一", "两", "三", "四", "五", "六", "七", "八", "九", "十")

# Determiners. Singular: the, a, this, possessives. Plural: numbers, these, a few (no plural possessive or
# plural "the": Chinese would merge them with the singular).
_SG_DETS = ("the", "a", "this", "my", "your", "our", "their")
_PL_DETS_1 = ("num", "these")
_PL_DETS_2 = ("num", "these", "few")
_SERVING_DETS_SG = ("the", "a", "this")  # servings: no possessive (我的一杯茶) and no "these" (这些茶)
_SERVING_DETS_PL_1 = ("num",)
_SERVING_DETS_PL_2 = ("num", "few")
_POSSESSIVE = {"my": ("mon", "ma", "我的"), "your": ("ton", "ta", "你的"), "our": ("notre", "notre", "我们的"),
               "their": ("leur", "leur", "他们的")}


# ---------------------------------------------------------------------------------------------- facts
@dataclass(frozen=True)
class _NP:
    """A noun phrase's facts."""

    head: _Noun | _Serving | _Name
    det: str = ""  # "" for names; see _SG_DETS / _PL_DETS_2
    number: int = 1
    adj: _Adjective | None = None

    @property
    def plural(self) -> bool:
        return self.det in ("num", "these", "few")

    @property
    def gender(self) -> str:
        return self.head.gender


@dataclass(frozen=True)
class _Clause:
    subject: _NP
    verb: _Verb
    tense: int  # 0 present, 1 past, 2 future
    obj: _NP | None = None
    time: tuple | None = None
    place: tuple[str, str, str] | None = None


def _object_pool(verb: _Verb) -> tuple:
    spec = verb.objects
    if spec == "being":
        return _PEOPLE + _ANIMALS + _NAMES
    if spec == "animal":
        return _ANIMALS
    things, _, servings = spec.partition("+")
    pool: tuple = tuple(n for n in _THINGS if any(t in n.tags for t in things)) if things else ()
    if "+" in spec:
        pool += tuple(s for s in _SERVINGS if servings == "" or s.liquid == (servings == "l"))
    return pool


def _subject_pool(verb: _Verb) -> tuple:
    return _PEOPLE + _NAMES + (_ANIMALS if verb.subjects == "pa" else ())


_OBJECT_POOLS = {v: _object_pool(v) for v in _VERBS if v.objects}
_SUBJECT_POOLS = {v: _subject_pool(v) for v in _VERBS}


def _draw_np(d: Draw, pool: Sequence, level: int, subject: bool = False) -> _NP:
    head = d.fact(pool)
    if isinstance(head, _Name):
        return _NP(head)
    serving = isinstance(head, _Serving)
    if d.flag(1 / 2):  # plural
        if serving:
            det = d.fact(_SERVING_DETS_PL_1 if level == 1 else _SERVING_DETS_PL_2)
        else:
            det = d.fact(_PL_DETS_1 if level == 1 else _PL_DETS_2)
        # numbers above ten (digits) only in objects: no sentence starts with a digit
        number = 2 + d.fact_i(9 if level == 1 or subject else 98) if det == "num" else 0
    else:
        det, number = d.fact(_SERVING_DETS_SG if serving else _SG_DETS), 1
    adj = None
    if level >= 2 and isinstance(head, _Noun) and "a" not in head.tags and d.flag(1 / 2):
        adj = d.fact(_ADJ_BY_KIND[head.kind])
    return _NP(head, det, number, adj)


def _draw_clause(d: Draw, level: int) -> _Clause:
    verb = d.fact(_VERBS)
    tense = d.fact_i(3)
    if tense == 0:
        time = d.fact(_FREQUENCY if level == 1 else _PRESENT_TIMES)
    elif level >= 2 and d.flag(2 / 3):
        time = d.fact(_PAST_TIMES if tense == 1 else _FUTURE_TIMES)
    else:
        time = None
    place = d.fact(_PLACES) if level >= 2 and verb.place and d.flag(1 / 2) else None
    subject = _draw_np(d, _SUBJECT_POOLS[verb], level, subject=True)
    obj = None
    if verb.objects:
        obj = _draw_np(d, _OBJECT_POOLS[verb], level)
    return _Clause(subject, verb, tense, obj, time, place)


def _draw_row(d: Draw, level: int) -> list:
    """The row's facts, redrawn until their key lands in the split's buckets (about 1.1 draws for train,
    20 for validation and test: tens of microseconds each)."""
    for _ in range(100_000):
        d.key = 0
        clauses = [_draw_clause(d, level)]
        if level == 3:
            clauses.append(d.fact(_CONJUNCTIONS))
            clauses.append(_draw_clause(d, level))
        if any(c.obj is not None and c.obj.head is c.subject.head for c in clauses if isinstance(c, _Clause)):
            continue  # "Marie saw Marie": redraw
        if d.key % NUM_BUCKETS in d.buckets:
            return clauses
    raise RuntimeError("no draw of facts landed in the split's buckets")  # pragma: no cover - p < 1e-2000


# ---------------------------------------------------------------------------------------------- English
def _en_np(np: _NP) -> str:
    head = np.head
    if isinstance(head, _Name):
        return head.name
    if isinstance(head, _Serving):
        noun = f"{head.en_pl if np.plural else head.en} {head.en_of}"
    else:
        noun = head.en_pl if np.plural else head.en
    words = ([np.adj.en] if np.adj else []) + [noun]
    det = np.det
    if det == "a":
        det = "an" if _en_vowel(words[0]) else "a"
    elif det == "num":
        det = _EN_NUMBERS[np.number] if np.number <= 10 else str(np.number)
    elif det == "few":
        det = "a few"
    return " ".join([det] + words)


def _en_clause(c: _Clause) -> str:
    base, third, past = c.verb.en
    plural = c.subject.plural
    if c.tense == 0:
        verb = base if plural else third
    elif c.tense == 1:
        verb = past
    else:
        verb = f"will {base}"
    parts = [_en_np(c.subject)]
    if c.time and c.time[1] == "pre":
        parts.append(c.time[0])
    parts.append(verb)
    if c.obj is not None:
        parts.append(_en_np(c.obj))
    if c.place:
        parts.append(c.place[0])
    if c.time and c.time[1] == "end":
        parts.append(c.time[0])
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------- French
def _fr_adj_form(adj: _Adjective, gender: str, plural: bool, next_word: str | None) -> str:
    if adj.fr_vowel and gender == "m" and not plural and next_word is not None and _fr_vowel(next_word):
        return adj.fr_vowel
    return adj.fr[(gender == "f") + 2 * plural]


def _fr_np(np: _NP) -> str:
    head = np.head
    if isinstance(head, _Name):
        return head.name
    plural, gender = np.plural, np.gender
    if isinstance(head, _Serving):
        body = [head.fr_pl if plural else head.fr, head.fr_of]
    else:
        noun = head.fr_pl if plural else head.fr
        if np.adj is None:
            body = [noun]
        elif np.adj.before:
            body = [_fr_adj_form(np.adj, gender, plural, noun), noun]
        else:
            body = [noun, _fr_adj_form(np.adj, gender, plural, None)]
    first = body[0]
    vowel = _fr_vowel(first)
    det = np.det
    if det == "the":
        return ("l'" + " ".join(body)) if vowel else " ".join(["le" if gender == "m" else "la"] + body)
    if det == "a":
        words = ["un" if gender == "m" else "une"]
    elif det == "this":
        words = ["cette" if gender == "f" else ("cet" if vowel else "ce")]
    elif det in _POSSESSIVE:
        m, f, _ = _POSSESSIVE[det]
        words = [m if gender == "m" or vowel else f]
    elif det == "num":
        words = [_FR_NUMBERS[np.number] if np.number <= 10 else str(np.number)]
    elif det == "these":
        words = ["ces"]
    else:  # few
        words = ["quelques"]
    return " ".join(words + body)


def _fr_clause(c: _Clause) -> str:
    inf, il, ils, pp = c.verb.fr
    plural = c.subject.plural
    if c.tense == 0:
        verb = [ils if plural else il]
    elif c.tense == 1:
        if c.verb.etre:
            agreed = pp + ("e" if c.subject.gender == "f" else "") + ("s" if plural else "")
            verb = ["sont" if plural else "est", agreed]
        else:
            verb = ["ont" if plural else "a", pp]
    else:
        verb = ["vont" if plural else "va", inf]
    parts = [_fr_np(c.subject)] + verb
    if c.time and c.time[3] == "verb":
        parts.append(c.time[2])
    if c.obj is not None:
        parts.append(_fr_np(c.obj))
    if c.place:
        parts.append(c.place[1])
    if c.time and c.time[3] == "end":
        parts.append(c.time[2])
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------- Chinese
def _zh_np(np: _NP) -> str:
    head = np.head
    if isinstance(head, _Name):
        return head.zh
    if isinstance(head, _Serving):
        noun = head.zh
    else:
        noun = (np.adj.zh[head.kind] if np.adj else "") + head.zh
    det, mw = np.det, head.mw
    if det in _POSSESSIVE:
        return _POSSESSIVE[det][2] + noun
    if det == "these":
        return "这些" + noun
    if det == "num":
        number = _ZH_NUMBERS[np.number] if np.number <= 10 else str(np.number)
    else:
        number = {"the": "那", "a": "一", "this": "这", "few": "几"}[det]
    return number + mw + noun


def _zh_clause(c: _Clause) -> str:
    out = _zh_np(c.subject)
    if c.time:
        out += c.time[4]
    if c.tense == 2:
        out += "会"
    if c.place:
        out += c.place[2]
    out += c.verb.zh
    if c.obj is not None:
        out += ("了" if c.tense == 1 else "") + _zh_np(c.obj)
    elif c.tense == 1:
        out += "了"
    return out


# ---------------------------------------------------------------------------------------------- rows
def _render(clauses: list) -> dict[str, str]:
    """The sentence of each language for one row's facts (one clause, or clause, conjunction, clause)."""
    en, fr, zh = _en_clause(clauses[0]), _fr_clause(clauses[0]), _zh_clause(clauses[0])
    if len(clauses) == 3:
        (en_c, fr_c, zh_c), second = clauses[1], clauses[2]
        fr2 = _fr_clause(second)
        if fr_c == " parce que" and _fr_vowel(fr2):
            fr_c = " parce qu'"
            fr += fr_c + fr2
        else:
            fr += f"{fr_c} {fr2}"
        en += f"{en_c} {_en_clause(second)}"
        zh += zh_c + _zh_clause(second)
    return {"en": upper_first(en) + ".", "fr": upper_first(fr) + ".", "zh": zh + "。"}


def translation_pair_row(split: str, index: int, difficulty: int = 1) -> dict:
    """Row ``index`` of the embedded English / French / Chinese sentence triples (WMT's row format).

    :param split: ``"train"``, ``"validation"`` or ``"test"`` (disjoint by construction: no sentence of one
        split appears in another, in any of the three languages).
    :param index: the row, ``0 <= index < SPLIT_SIZES[split]``.
    :param difficulty: 1 (one short clause: about 5 English words, 9 Chinese characters), 2 (an adjective,
        a place and a time phrase may join: about 7 words, 14 characters, at most 26) or 3 (two such clauses
        and a conjunction: about 16 words, 30 characters, at most 48).
    :return: ``{"translation": {"en": str, "fr": str, "zh": str}}``, the same meaning in each language.
    """
    index = check_row(split, index, difficulty)
    d = Draw("translation-enfrzh", split, index, difficulty)
    return {"translation": _render(_draw_row(d, difficulty))}


def lexicon_texts() -> list[str]:
    """Every word form of the lexicon in the three languages, one string each (for tokenizer training:
    the generated rows cover most of them, these make sure the rare ones are seen too)."""
    out: list[str] = []
    for n in _PEOPLE + _ANIMALS + _THINGS:
        out += [n.en, n.en_pl, n.fr, n.fr_pl, n.zh]
    for s in _SERVINGS:
        out += [f"{s.en} {s.en_of}", f"{s.en_pl} {s.en_of}", f"{s.fr} {s.fr_of}", f"{s.fr_pl} {s.fr_of}", s.zh]
    for name in _NAMES:
        out += [name.name, name.zh]
    for a in _ADJECTIVES:
        out += [a.en, *a.fr, *a.zh.values()] + ([a.fr_vowel] if a.fr_vowel else [])
    for v in _VERBS:
        out += [*v.en, *v.fr, v.zh]
    for table in (_PRESENT_TIMES, _PAST_TIMES, _FUTURE_TIMES):
        out += [t[i] for t in table for i in (0, 2, 4)]
    out += [p for place in _PLACES for p in place] + [c.strip(" ,，") for conj in _CONJUNCTIONS for c in conj]
    return out

