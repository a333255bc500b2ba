"""Generates nlp/data/classify_train.jsonl: phrase lists x frames (service coverage), hand-written lines
(questions, notices, chatter, varied reports), and the labelled dev set. Run: python nlp/data/make_train.py"""

import json
import random
from pathlib import Path
from typing import Any

rng = random.Random(7)
P = {  # service -> list of (intent, problem phrase)
    "municipal_facility": [
        ("hazard", "井盖松动"),
        ("hazard", "井盖翘起来了"),
        ("complaint", "路灯不亮"),
        ("complaint", "路灯坏了"),
        ("hazard", "路面塌陷"),
        ("complaint", "下水道堵塞"),
        ("complaint", "下水道返味还堵"),
        ("complaint", "雨水口被堵死"),
        ("complaint", "人行道的砖坏了"),
        ("complaint", "马路上好多坑"),
        ("complaint", "红绿灯不亮"),
        ("hazard", "窨井盖碎了一块"),
        ("complaint", "路灯白天还亮着"),
        ("complaint", "排水沟堵了"),
    ],
    "property_repair": [
        ("complaint", "电梯坏了"),
        ("complaint", "电梯老是停"),
        ("complaint", "门禁坏了"),
        ("complaint", "楼道灯不亮"),
        ("complaint", "水管漏水"),
        ("complaint", "屋顶漏雨"),
        ("complaint", "暖气不热"),
        ("complaint", "单元门锁坏了"),
        ("complaint", "对讲门铃没反应"),
        ("complaint", "声控灯坏了"),
        ("complaint", "楼梯扶手断了"),
        ("complaint", "公共水管冻裂了"),
        ("complaint", "电梯异响"),
        ("complaint", "车库灯不亮"),
    ],
    "property_service": [
        ("complaint", "物业费太贵"),
        ("complaint", "物业服务态度差"),
        ("complaint", "物业收支不公开"),
        ("complaint", "物业乱收费"),
        ("complaint", "保安不负责"),
        ("complaint", "物业报修没人来"),
        ("complaint", "公共收益去向不明"),
        ("complaint", "物业电话打不通"),
        ("complaint", "物业不给开收据"),
    ],
    "sanitation": [
        ("complaint", "垃圾没人清运"),
        ("complaint", "楼道堆满杂物"),
        ("complaint", "污水横流"),
        ("complaint", "垃圾桶满了没人倒"),
        ("complaint", "到处是臭味"),
        ("complaint", "建筑垃圾乱堆"),
        ("complaint", "化粪池满了"),
        ("complaint", "没人打扫卫生"),
        ("complaint", "垃圾堆得跟山一样"),
        ("complaint", "有人乱倒垃圾"),
    ],
    "parking_traffic": [
        ("complaint", "乱停车"),
        ("complaint", "车位被占了"),
        ("complaint", "车把路堵了"),
        ("complaint", "有僵尸车占车位"),
        ("complaint", "外来车辆乱停"),
        ("complaint", "车停在人行道上"),
        ("complaint", "私装地锁"),
        ("complaint", "大货车堵门"),
    ],
    "ebike_fire_safety": [
        ("complaint", "有人飞线充电"),
        ("complaint", "电动车推进楼道"),
        ("complaint", "电瓶车进电梯"),
        ("complaint", "消防通道被堵"),
        ("hazard", "楼道里给电动车充电"),
        ("complaint", "灭火器过期了"),
        ("complaint", "消防栓没水"),
        ("complaint", "私拉电线充电"),
        ("hazard", "电动车在楼里充电插排发烫"),
    ],
    "noise": [
        ("complaint", "装修噪音太大"),
        ("complaint", "广场舞太吵"),
        ("complaint", "半夜有人喧哗"),
        ("complaint", "施工噪音扰民"),
        ("complaint", "小摊贩大喇叭吆喝"),
        ("complaint", "KTV太吵"),
        ("complaint", "深夜有人打牌吵闹"),
        ("complaint", "楼上砸墙声音太大"),
    ],
    "pets": [
        ("complaint", "遛狗不拴绳"),
        ("hazard", "狗咬伤人"),
        ("complaint", "狗屎没人清"),
        ("complaint", "狗半夜一直叫"),
        ("complaint", "流浪狗太多"),
        ("complaint", "养的狗太多有味道"),
        ("complaint", "大狗不戴嘴套"),
        ("complaint", "流浪猫乱叫"),
    ],
    "greenery": [
        ("complaint", "树枝太长挡窗户"),
        ("hazard", "有棵危树要倒"),
        ("complaint", "蚊子太多"),
        ("complaint", "老鼠乱窜"),
        ("complaint", "草坪没人修剪"),
        ("complaint", "蟑螂很多"),
        ("complaint", "树上有马蜂窝"),
        ("complaint", "绿化带没人管"),
    ],
    "public_safety": [
        ("hazard", "高空坠物"),
        ("hazard", "电线裸露"),
        ("hazard", "有燃气味"),
        ("hazard", "外墙皮脱落"),
        ("hazard", "空调外机要掉了"),
        ("hazard", "冒烟了"),
        ("hazard", "配电箱门开着电线外露"),
        ("hazard", "施工坑没有围挡"),
        ("hazard", "窗户玻璃要掉下来"),
        ("hazard", "楼上往下扔东西"),
    ],
    "neighbor_dispute": [
        ("complaint", "楼上漏水到我家，说了几次都不肯修"),
        ("complaint", "邻居占用公共过道"),
        ("complaint", "邻居在楼道放柜子不挪"),
        ("complaint", "邻居私自圈地"),
        ("complaint", "和邻居吵起来了需要调解"),
        ("complaint", "邻居空调滴水到我家"),
        ("complaint", "楼上天天蹦跶说了不听"),
    ],
    "market_vendor": [
        ("complaint", "菜市场卫生太差"),
        ("complaint", "缺斤短两"),
        ("complaint", "商户占道经营"),
        ("complaint", "饭店油烟扰民"),
        ("complaint", "卖过期食品"),
        ("complaint", "无证摊贩乱摆"),
        ("complaint", "商户把东西摆到人行道"),
    ],
    "elderly_child_care": [
        ("complaint", "独居老人需要帮助"),
        ("complaint", "助老餐不好吃还少"),
        ("complaint", "四点半课堂没开"),
        ("complaint", "老人好几天没出门"),
        ("complaint", "老人摔倒了没人管"),
        ("complaint", "老年活动室不开门"),
        ("complaint", "孩子放学没人看"),
    ],
    "other": [
        ("complaint", "快递柜坏了"),
        ("complaint", "社区电话打不通"),
        ("complaint", "信号太差"),
        ("complaint", "证明开错了"),
        ("complaint", "公告栏被人撕了"),
    ],
}
PLACES = [
    "",
    "",
    "3号楼",
    "5号楼门口",
    "东门",
    "2号楼2单元",
    "小区南门",
    "地下车库",
    "8栋",
    "焕玉里2号门",
    "幸福里4号楼楼下",
    "宜景菜市场门口",
    "北门外",
    "11号楼后面",
    "垃圾站旁边",
    "1单元",
    "车棚",
    "小区门口",
    "篮球场边上",
    "7号楼楼道",
]
FRAMES = [
    "{p}{x}",
    "{p}{x}了",
    "{p}{x}，麻烦处理一下",
    "报修：{p}{x}",
    "{p}{x}好几天了没人管",
    "投诉{p}{x}",
    "{p}{x}，有没有人管啊",
    "大家好，{p}{x}",
    "{x}，在{p}",
    "{p}那个{x}，赶紧来看看吧",
    "小门 {p}{x}",
    "{p}{x}😡",
    "{p}又{x}，真受不了",
    "我要反映一下{p}{x}的问题",
]
rows: list[dict[str, Any]] = []
for svc, probs in P.items():
    for intent, x in probs:
        for f in rng.sample(FRAMES, 4):
            p = rng.choice(PLACES)
            if "{p}" in f and f.startswith("{x}，在") and not p:
                p = "3号楼"
            rows.append({"text": f.format(p=p, x=x), "intent": intent, "service_code": svc})
# questions
TOPICS = [
    "居住证",
    "养犬证",
    "低保",
    "高龄补贴",
    "医保",
    "社保",
    "四点半课堂",
    "助老食堂",
    "专项维修资金",
    "物业费",
    "电动车上牌",
    "垃圾分类",
    "独生子女证明",
    "出生证明",
    "残疾证",
    "廉租房",
    "老年卡",
    "疫苗",
    "党员关系转接",
    "居家养老",
    "充电桩",
    "车位",
    "业委会",
    "装修审批",
    "临时救助",
]
QF = [
    "{t}怎么办理",
    "{t}去哪里办",
    "请问{t}需要什么材料",
    "{t}几点可以办",
    "{t}有什么条件吗",
    "想问下{t}的事",
    "{t}多少钱啊",
    "{t}能在网上办吗？",
    "{t}找谁",
    "小门，{t}怎么弄",
]
for t in TOPICS:
    for f in rng.sample(QF, 3):
        rows.append({"text": f.format(t=t), "intent": "question"})
NF = ["【通知】{e}", "各位居民：{e}", "温馨提示：{e}", "@所有人 {e}", "物业通知：{e}", "关于{e}的通知"]
EV = [
    "明天上午8点到下午4点停电检修",
    "周三全天停水，请提前储水",
    "本周六社区开展义诊活动",
    "下周一开始燃气入户安检",
    "今晚有雷阵雨，注意关好门窗",
    "小区消杀工作明天上午进行",
    "社区将于周五举办垃圾分类宣传活动",
    "二次供水水箱清洗期间暂停供水",
    "国庆期间居委会值班安排已公布",
    "电梯年检周四进行，期间暂停使用",
    "业主大会投票截止到本月底",
    "防范电信诈骗，不要轻信陌生来电",
]
for e in EV:
    for f in rng.sample(NF, 2):
        rows.append({"text": f.format(e=e), "intent": "notice"})
CHAT = [
    "哈哈哈",
    "谢谢大家",
    "好的收到",
    "早啊",
    "晚安各位",
    "👍👍👍",
    "[玫瑰][玫瑰]",
    "今天好热啊",
    "有人拼车去机场吗",
    "谁家孩子的外套落在滑梯了",
    "辛苦辛苦",
    "新年快乐！",
    "+1",
    "是的是的",
    "出闲置冰箱一台",
    "楼下新开了家面馆",
    "明天降温了大家多穿点",
    "好嘞",
    "赞一个，修得真快",
    "感谢网格员帮忙",
    "哪位邻居有打气筒借用一下",
    "群里好热闹",
    "晚上一起跳舞呀",
    "转发：夏季防溺水安全知识",
    "我到家了",
    "打扰了打扰了",
    "真不错",
    "收到谢谢",
    "你好",
    "在吗",
]
for c in CHAT:
    rows.append({"text": c, "intent": "chitchat"})
CMD = [
    "查询工单 #12",
    "查询工单#3",
    "我的工单",
    "/帮助",
    "帮助",
    "/通知 周末停水",
    "/通知 明天消防演练",
    "查工单 #56",
    "工单 #9 怎么样了",
    "查一下我的工单",
    "/工单 #18 已处理",
    "菜单",
    "查询工单 100",
]
for c in CMD:
    # a resident asking after a ticket is a question (answered unprompted); slash commands and help are commands
    query = "工单" in c and not c.startswith(("/", "／"))
    rows.append({"text": c, "intent": "question" if query else "command"})
# hand-written, varied
HAND = [
    ("我们楼的电梯三天两头坏，今天又把人关里面十分钟", "hazard", "property_repair"),
    ("楼道里黑咕隆咚的灯坏了谁来修一下", "complaint", "property_repair"),
    ("物业能不能管管，小区门口垃圾都堆成山了", "complaint", "sanitation"),
    ("送外卖的时候发现那边井盖歪了，开车的注意点", "hazard", "municipal_facility"),
    ("楼上的水又漏下来了，我家卫生间天花板都泡了", "complaint", "property_repair"),
    ("这狗天天半夜狂叫，主人也不管", "complaint", "pets"),
    ("谁家在楼下烧纸，烟都飘进屋里了", "hazard", "public_safety"),
    ("家里闻到一股臭鸡蛋味，是不是燃气漏了", "hazard", "public_safety"),
    ("地库好几个车位被人堆了杂物", "complaint", "parking_traffic"),
    ("麻烦物业看一下，我家门口那个消防栓一直在滴水", "complaint", "property_repair"),
    ("小区喷泉池子里的水臭了，一堆蚊子", "complaint", "greenery"),
    ("老人食堂今天的菜都馊了，老人吃了拉肚子", "complaint", "elderly_child_care"),
    ("菜场门口卖菜的秤有问题，称出来比家里多一斤", "complaint", "market_vendor"),
    ("那边施工晚上还在挖，轰隆隆的", "complaint", "noise"),
    ("有人在绿化带里私自种菜，还浇大粪", "complaint", "neighbor_dispute"),
    ("电动车停在单元门口充电，线从窗户里扯出来的", "complaint", "ebike_fire_safety"),
    ("小区东北角的围墙裂了，感觉要倒", "hazard", "public_safety"),
    ("路边的排水井盖被车压碎了", "hazard", "municipal_facility"),
    ("这物业啥也不干就知道收钱", "complaint", "property_service"),
    ("有个大爷在楼道里摔倒了，起不来，快来人", "hazard", "elderly_child_care"),
    ("马路对面的路灯杆被车撞歪了", "hazard", "municipal_facility"),
    ("我们单元的防盗门一直开着，门吸坏了", "complaint", "property_repair"),
    ("楼下那家小饭馆每天晚上往下水道倒油", "complaint", "market_vendor"),
    ("小区的健身器材坏了，螺丝都掉了", "hazard", "public_safety"),
    ("车棚里的电线老化了，都能看见铜丝", "hazard", "public_safety"),
    ("垃圾车每天早上五点来收垃圾，声音大得吓人", "complaint", "noise"),
    ("小区里有人养鸡，天天打鸣", "complaint", "pets"),
    ("老鼠把我家电动车的线都咬断了", "complaint", "greenery"),
    ("我家对面那户把楼梯间堆满了废品", "complaint", "sanitation"),
    ("停车场收费员乱收费，一小时收十块", "complaint", "parking_traffic"),
]
for t, i, s in HAND:
    rows.append({"text": t, "intent": i, "service_code": s})
QHAND = [
    "电梯坏了找谁修？",
    "燃气漏了应该打什么电话",
    "狗咬人了怎么办，要打疫苗吗",
    "停电了是物业的问题还是电力公司？",
    "车位能卖吗",
    "物业费能不能不交",
    "噪音扰民可以报警吗",
    "下水道堵了是物业管还是自己修？",
    "楼道能放电动车吗",
    "小区有没有充电桩",
]
for t in QHAND:
    rows.append({"text": t, "intent": "question"})
for r in rows:
    r["needs_ticket"] = r["intent"] in ("complaint", "hazard")
    r.setdefault("service_code", None)
MORE_Q = [
    "小区几点关大门",
    "居委会在哪栋楼啊",
    "办理老年优待证要带什么",
    "孩子上学需要社区开什么证明",
    "党群服务中心周末开门吗",
    "社区食堂对外开放吗，年轻人能去吃吗",
    "快递驿站几点关门",
    "物业电话多少",
    "电动车充电一次多少钱",
    "新能源车能在小区装充电桩吗，要什么手续",
    "楼道灯是声控的还是感应的",
    "社区有没有法律咨询",
    "哪天收大件垃圾",
    "户口迁入社区要什么流程",
    "公租房怎么申请",
    "社区有老年大学吗",
    "有没有人知道核酸点撤了没",
    "在哪可以打印复印",
    "门禁卡丢了怎么补",
    "补办门禁卡多少钱",
    "宠物狗要打什么疫苗",
    "物业管理条例里面怎么规定的",
    "业主大会怎么召开",
    "独居老人可以申请紧急呼叫器吗",
    "我们这边属于哪个网格",
    "网格员是谁，怎么找",
    "燃气费在哪交",
    "水费电费能在社区缴吗",
    "小孩打疫苗去哪个卫生站",
    "社区有没有招聘信息",
    "退休认证在哪里做",
    "请问助老食堂可以送餐上门吗",
    "楼顶能晒被子吗",
    "二手房过户要社区盖章吗",
    "狗狗去哪里办证啊😂",
    "车辆进小区怎么登记",
    "访客车辆停多久收费",
    "咨询一下养老金的事",
    "装空调要物业同意吗",
    "小区能养鸡鸭吗",
    "周末有什么亲子活动吗",
    "暖气费怎么交，有没有补贴",
    "居民医保今年交多少",
    "垃圾袋在哪领",
    "外卖柜在哪个位置",
    "骑手休息的驿站在哪",
    "小区里能摆摊吗",
    "有没有上门理发的服务",
    "怎么加入志愿者队伍",
    "要开无犯罪证明去哪",
]
MORE_N = [
    "【停电通知】因线路改造，本周四9:00-17:00 5号楼停电",
    "各位邻居：今晚8点业委会在活动室开会，欢迎旁听",
    "物业提示：近期小区内发现老鼠，已投放鼠药，请看管好孩子和宠物",
    "接上级通知，明天起小区实行车辆登记出入",
    "社区通知：请60岁以上老人本周内到卫生站领取体检报告",
    "【重要】本周日上午小区停气维修，请关闭燃气阀门",
    "温馨提醒：冬季用电高峰，请勿私拉电线",
    "公告：东门夜间11点后关闭，请从南门出入",
    "社区活动预告：周六下午2点剪纸活动，地点老年活动室",
    "物业通知：下周二电梯维保，1号楼电梯暂停使用半天",
    "通知：明天上午10点消防检查，请各户配合入户",
    "各位家长，四点半课堂本周五暂停一次",
    "提醒大家：台风来临，请收好阳台物品，车辆不要停在树下",
    "社区将于下月开展人口普查登记，届时工作人员上门",
    "@所有人 疫苗接种车周三上午到小区东门",
    "今明两天小区绿化打药，请勿带孩子和宠物靠近草坪",
    "明天上午9点网格员入户走访，请家中留人",
    "关于开展楼道杂物清理的通知：请于本周日前清理完毕",
]
MORE_C = [
    "哈哈有意思",
    "谢谢小门",
    "好的谢谢",
    "大家晚上好",
    "早安🌞",
    "吃了吗",
    "今天菜市场的西红柿好便宜",
    "有人看昨天的球赛吗",
    "😂😂😂",
    "[捂脸]",
    "明天见",
    "我也是",
    "同意楼上",
    "谁有多余的纸箱子借我两个",
    "求推荐个靠谱的装修队",
    "我家孩子作业又写到十点",
    "这天儿说变就变",
    "大家注意保暖",
    "哪位捡到一串钥匙，上面有个小熊挂件",
    "有没有人要多肉，免费送",
    "恭喜发财红包拿来🧧",
    "厉害了",
    "点赞👍",
    "下雨了收衣服啊",
    "收到收到",
    "兄弟们冲啊，今天单量爆了",
    "刚送完一单累死了",
    "这个活动真好，下次还参加",
    "楼下那只橘猫又胖了",
    "我在群里潜水好久了",
    "哈哈哈哈哈哈",
    "已转发",
    "好的，知道了，谢谢通知",
    "今天老年合唱团排练得真好",
    "我家有多的月饼，谁要",
    "周末去爬山有人一起吗",
    "手机号换了，以后找我打新号码",
    "物业的小王人真好",
    "拜年啦各位",
    "我来晚了",
]
# The broken thing decides the service, not who got hurt by it: a rider's "井盖松了，电动车差点翻了" is a
# manhole (municipal_facility), not an e-bike problem. Objects x victims, labelled with the object's service;
# and the other way round, reports where the vehicle itself is the problem, next to a facility word. They teach
# the service model only (source "service"): who was hurt says nothing new about complaint vs hazard.
vr = random.Random(11)
OBJECTS = [
    ("municipal_facility", "井盖松了"),
    ("municipal_facility", "井盖没盖严"),
    ("municipal_facility", "路面塌了个大坑"),
    ("municipal_facility", "雨水篦子缺了一块"),
    ("municipal_facility", "路灯不亮黑乎乎的"),
    ("municipal_facility", "人行道砖翘起来了"),
    ("property_repair", "单元门口台阶碎了"),
    ("property_repair", "车库的灯全灭了"),
    ("property_repair", "楼道灯坏了"),
    ("public_safety", "电线垂到路上了"),
    ("public_safety", "围墙塌了一块砖头满地"),
    ("sanitation", "地上全是泔水油污"),
    ("greenery", "断了的树枝横在路上"),
    ("parking_traffic", "车乱停把路堵了一半"),
]
VICTIMS = [
    "电动车差点翻了",
    "骑电瓶车的差点摔了",
    "外卖小哥连人带车摔了一跤",
    "我家孩子差点掉进去",
    "老人差点绊倒",
    "自行车轮子卡进去了",
    "汽车轮胎都压坏了",
    "送餐的电驴侧翻了",
    "骑手差点摔了",
    "晚上骑车根本看不见",
    "电动车轮子陷进去了",
    "快递三轮车过不去",
]
VFRAMES = ["{p}{x}，{v}", "{p}{x}，{v}，赶紧修一下", "小门 {p}{x}，{v}", "{v}，{p}{x}", "{p}{x}，刚才{v}"]
for svc, x in OBJECTS:
    for v in vr.sample(VICTIMS, 4):
        f = vr.choice(VFRAMES)
        p = vr.choice(PLACES)
        intent = "hazard" if svc in ("municipal_facility", "public_safety") else "complaint"
        rows.append(
            {"text": f.format(p=p, x=x, v=v), "intent": intent, "service_code": svc, "source": "service"}
        )
for t in [
    "井盖旁边有人飞线给电动车充电",
    "路灯杆上拉了根线给电瓶车充电",
    "楼道里停了三辆电动车在充电，消防通道都堵了",
    "电动车推进电梯里了，充电器还冒烟",
    "车棚的电动车充电插座烧黑了",
    "有人把电瓶拎回家充电，楼道里全是线",
]:
    rows.append({"text": t, "intent": "hazard", "service_code": "ebike_fire_safety", "source": "service"})
for t in MORE_Q:
    rows.append({"text": t, "intent": "question", "needs_ticket": False, "service_code": None})
for t in MORE_N:
    rows.append({"text": t, "intent": "notice", "needs_ticket": False, "service_code": None})
for t in MORE_C:
    rows.append({"text": t, "intent": "chitchat", "needs_ticket": False, "service_code": None})
for r in rows:
    r.setdefault("source", "train")  # "service": taught to the service model only (see nlp/classifier.py)
# the labelled dev set (tests/data/classify_dev.jsonl) is trained on too; the evaluation leaves its folds out
ROOT = Path(__file__).resolve().parents[2]
for line in (ROOT / "tests" / "data" / "classify_dev.jsonl").read_text(encoding="utf-8").splitlines():
    d = json.loads(line)
    rows.append(
        {
            "text": d["text"],
            "intent": d["intent"],
            "needs_ticket": d["needs_ticket"],
            "service_code": d["service_code"],
            "source": "dev",
        }
    )
with open(Path(__file__).with_name("classify_train.jsonl"), "w", encoding="utf-8") as out:
    for r in rows:
        out.write(json.dumps(r, ensure_ascii=False) + "\n")
print(len(rows))
